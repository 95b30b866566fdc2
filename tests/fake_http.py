"""The request handler the tests' fake HTTP servers share: quiet, keep-alive, JSON.

Keep-alive (HTTP/1.1) because both load generators reuse connections and the fakes
must let them; silent because http.server logs every request to stderr. Importable
as `fake_http` from every test: tests/conftest.py puts this directory on sys.path.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def read_json(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def send_json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
