"""Manifest-file mode: the same reconciler, driven by files instead of the API."""
