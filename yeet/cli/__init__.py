"""The command line: thin commands over sessions (borg's archiver/ style)."""
