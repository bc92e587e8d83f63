"""Bytes and sockets: the proxy front door, the pooled upstream client, and forwarding."""
