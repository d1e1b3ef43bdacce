"""Repositories: explicit row <-> domain mapping. They never commit."""
