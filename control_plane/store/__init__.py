"""Persistence of the registry, split by concern (integrations and their ports, the event
outbox, API keys, the audit log) and written once for its SQLite and PostgreSQL engines."""
