"""One running fakests: the app assembled from the wings (``app.routes`` is the index of the server),
its runtime (keys, TLS, store and sandboxes made from settings at start-up) and uvicorn serving it
with an event-driven stop.
"""
