"""Local servers that speak the vendors' WebSocket protocols, for the provider tests.

Each one is written from its vendor's documentation (cited in its module),
records what its clients send, and plays a script of faults, one entry per
connection in the order they arrive.
"""
