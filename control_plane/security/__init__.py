"""Security of the management plane: authentication (API keys, JWT), authorization
(roles scoped to tenants), per-principal rate limits, the SSRF guard and the audit log.

See ``docs/security.md`` for the threat model and the permission matrix.
"""
