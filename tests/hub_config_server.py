"""A stand-in for the hub on loopback that serves config.json files (and counts requests).

Point HF_ENDPOINT at `server.url`; `GET /{repo}/resolve/{revision}/config.json` answers
with the config registered for the repo, with the headers huggingface_hub's download
expects (ETag, X-Repo-Commit). Anything else is a 404.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class ConfigServer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.configs: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []


@contextmanager
def serve_configs() -> Iterator[ConfigServer]:
    holder: list[ConfigServer] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body_too: bool) -> None:
            server = holder[0]
            server.requests.append(f"{self.command} {self.path}")
            path = self.path.split("?", 1)[0].lstrip("/")
            repo, _, rest = path.partition("/resolve/")
            config = server.configs.get(repo)
            if config is None or not rest.endswith("/config.json"):
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps(config).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", f'"{abs(hash(body))}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.end_headers()
            if body_too:
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

        def log_message(self, *_: Any) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(ConfigServer(f"http://127.0.0.1:{httpd.server_address[1]}"))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
