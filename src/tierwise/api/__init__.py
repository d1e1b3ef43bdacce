"""HTTP edge: the native REST API and the platform dialects."""
