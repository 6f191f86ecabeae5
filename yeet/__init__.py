"""yeet: keep directory trees in sync, one way or both ways, and never lose data."""

__version__ = "0.1.0"
