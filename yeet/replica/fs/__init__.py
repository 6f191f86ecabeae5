"""Filesystem helpers of the replica side: the root-confined walk, durability, metadata,
free space, handles in use."""
