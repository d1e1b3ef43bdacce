"""Native API routes, one module per resource."""
