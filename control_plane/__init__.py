"""Integration Service control plane."""

__version__ = "1.0.0"
