"""Service discovery: Consul registration and catalog-fed upstream endpoints."""
