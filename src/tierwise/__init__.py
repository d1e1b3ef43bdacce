"""Tierwise: a loyalty tier engine."""

__version__ = "0.1.0"
