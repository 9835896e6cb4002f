"""A tiny static server for the example SPA: ``index.html``, ``redirect.html``, ``dist/`` and ``/config.json``.

    npm ci && npm run build
    python examples/spa/serve.py --port 3000 \\
        --authority https://localhost:8443/fa7e0000-0000-4000-8000-000000000001

then open http://localhost:3000 (a ``spa`` redirect URI of the default directory's "fakests spa" app).
Tests start it in a thread with ``start(config)`` on a free port and may change ``config`` between loads.
"""

from __future__ import annotations

import argparse
import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent
SPA_CLIENT_ID = "fa7e0000-0000-4000-8000-00000000a005"  # the default directory's "fakests spa"
FILES = {"/": "index.html", "/index.html": "index.html", "/redirect.html": "redirect.html",
         "/dist/app.js": "dist/app.js", "/dist/redirect.js": "dist/redirect.js"}


class Handler(SimpleHTTPRequestHandler):
    """Serves the app's few files and its settings; nothing else under the folder (no node_modules)."""

    config: dict[str, Any] = {}

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/config.json":
            body = json.dumps(self.config).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
            return
        if path not in FILES:
            self.send_error(404)
            return
        self.path = "/" + FILES[path]
        super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read fakests' journal instead
        pass


def start(config: dict[str, Any], host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Serve the built app in a daemon thread; ``config`` is served live as ``/config.json``."""
    if not (ROOT / "dist" / "app.js").exists():
        raise FileNotFoundError(f"{ROOT / 'dist' / 'app.js'} is missing: run `npm ci && npm run build` in {ROOT}")
    handler = type("ConfiguredHandler", (Handler,), {"config": config})
    server = ThreadingHTTPServer((host, port), partial(handler, directory=str(ROOT)))
    threading.Thread(target=server.serve_forever, name="example-spa", daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--authority", required=True, help="https://<fakests>/<tenant>")
    parser.add_argument("--client-id", default=SPA_CLIENT_ID)
    args = parser.parse_args()
    authority_host = urlsplit(args.authority).netloc
    server = start({"authority": args.authority, "clientId": args.client_id, "knownAuthorities": [authority_host]},
                   port=args.port)
    print(f"example SPA on http://localhost:{server.server_address[1]}  (Ctrl-C stops)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
