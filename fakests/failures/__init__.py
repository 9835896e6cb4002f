"""Scripted failures: what makes fakests fail the way Entra fails, when a test says so.

Scenarios (the JSON Schema and the strict loader), the engine that matches requests against rules and
counts them exactly, the one-line helpers tests use (``fail``, ``throttle``...), and transport faults
(resets, hangs, truncated bodies) at the level of uvicorn's protocol. It renders its answers through
the STS wing's error renderer, so a scripted AADSTS error is byte for byte what the real one would be.
"""
