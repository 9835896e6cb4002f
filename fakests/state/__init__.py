"""State: what fakests knows and keeps, with no HTTP in it.

The directory (tenants, apps, users) and its built-in default, settings and config files, sandboxes
(the unit of isolation) and their registry, the journal, the stores that share them between workers
(SQLite) and replicas (Redis), signing keys and the TLS CA. The lowest wing: it imports no other.
"""
