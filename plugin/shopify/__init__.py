"""The Admin GraphQL client for Shopify."""
