"""clvsync: customer lifetime value for Shopify stores."""
