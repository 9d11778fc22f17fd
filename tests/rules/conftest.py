"""Shared fixtures for the rules tests: where the optional shared/spec data lives."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SPEC = Path(__file__).resolve().parents[2] / ".." / "shared" / "spec"


@pytest.fixture
def spec_file():
    """Return a function giving a shared/spec file, skipping the test when it is absent."""

    def get(name: str) -> Path:
        path = SPEC / name
        if not path.is_file():
            pytest.skip(f"shared data {name} not available")
        return path

    return get


@pytest.fixture
def server():
    """A local server on 127.0.0.1 (ephemeral port): unpacks as (base URL, routes); ``routes`` maps a
    path (with or without its query string) to (status, body); ``.requests`` lists the paths asked."""
    routes: dict[str, tuple[int, bytes]] = {}
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            requests.append(self.path)
            status, body = routes.get(self.path) or routes.get(self.path.split("?", 1)[0], (404, b"not found"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield _Server(base, routes, requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


class _Server:
    def __init__(self, base: str, routes: dict, requests: list) -> None:
        self.base, self.routes, self.requests = base, routes, requests

    def __iter__(self):
        return iter((self.base, self.routes))
