"""Scheduled jobs: recompute, push, reconcile."""
