"""The management and health REST API (aiohttp)."""
