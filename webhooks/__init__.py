"""Webhook ingestion: receive, verify, store in the inbox, and process into the ledger."""
