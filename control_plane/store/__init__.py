"""Persistence of registered integrations: a Protocol with SQLite and PostgreSQL engines."""
