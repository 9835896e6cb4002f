"""Entra's wire: everything a client sees of the STS, path for path as login.microsoftonline.com has it.

The request path (``context``: parameters, sandbox lookup, the failure hook, ids, the journal row),
the endpoints (discovery, JWKS, instance discovery, user realm, token, device code), sign-in pages,
grants, client authentication, tokens, the AADSTS catalog and the one error renderer. It reads and
writes state; it does not know how failures are scripted, only that a sandbox may answer instead.
"""
