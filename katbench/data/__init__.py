"""Data sources, one module per domain (download + cache + checksum, or generated)."""
