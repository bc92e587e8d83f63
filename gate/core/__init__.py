"""The decision core: classify -> identify -> decide; pure where it can be (no sockets)."""
