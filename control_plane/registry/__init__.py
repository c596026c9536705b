"""The integration registry: model, schema, loader and service."""
