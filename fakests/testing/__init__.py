"""The ways a test reaches fakests: ``FakeSTS`` in a thread, the sandbox handle (``StsSandbox``) with
ready real clients, its remote twin over the admin API (``RemoteSandbox``), the pytest plugin, the
in-process ``requests`` transport, the sign-in driver and CA-trusting sessions.
"""
