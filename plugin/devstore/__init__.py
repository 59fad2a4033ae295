"""A local stand-in for a Shopify store: Admin GraphQL subset, webhook sender, store generator."""
