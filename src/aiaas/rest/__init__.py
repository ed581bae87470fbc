"""REST routes, for what GraphQL does poorly: streaming large files."""
