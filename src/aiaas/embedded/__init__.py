"""Embedded PostgreSQL and Redis, and the `aiaas dev` supervisor that runs the whole platform on
them in one foreground command."""
