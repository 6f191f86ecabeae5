"""Scanning a root: streaming listings, the stat cache, block digests, ignores."""
