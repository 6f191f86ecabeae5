"""The shared model: what every process of yeet speaks (entries, paths, digests,
addresses, errors, quoting). Runs everywhere, the bare remote ``python3`` included;
imports nothing else of yeet.
"""
