"""Tierwise benchmarks: ``.venv/bin/python -m bench`` (see docs/performance.md)."""
