"""Logging, metrics and request correlation."""
