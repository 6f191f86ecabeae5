"""The pure synchronisation core: entries, three-way reconcile, plans.

Nothing in this package performs I/O; it takes values and returns values.
"""
