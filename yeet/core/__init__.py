"""The pure core of a session: three-way reconcile, halts and the deletion guard, the
transfer scheduler, the local-copy index. Values in, values out: no I/O, no asyncio,
no clock. Imports only ``yeet.model``.
"""
