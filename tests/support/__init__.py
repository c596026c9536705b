"""Helpers shared by the test tiers (ports, waiting, processes)."""
