"""Changing a root: staged and verified writes, the trash, resumable uploads, large
files patched in place (redo log or reflink clone), yeet's own temporary names."""
