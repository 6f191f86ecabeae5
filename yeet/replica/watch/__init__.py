"""Watching a root for changes without polling, and telling yeet's own writes apart."""
