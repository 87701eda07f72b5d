"""A tiny threaded HTTP server on 127.0.0.1 that hands every request to a Python function.

``FakeServer(handle)``: ``handle(req)`` gets a :class:`Request` and returns
``(status, headers, body)`` where body is bytes, str, or anything JSON-serialisable.
Every request is recorded in ``server.requests``. Use as a context manager.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


Response = tuple[int, dict[str, str], Any]


@dataclass
class FakeServer:
    handle: Callable[[Request], Response]
    requests: list[Request] = field(default_factory=list)

    def __enter__(self) -> "FakeServer":
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True   # headers and body go out as two writes: no 40 ms delayed-ACK stall

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                req = Request(self.command, parts.path, query, {k: v for k, v in self.headers.items()}, body)
                outer.requests.append(req)
                try:
                    status, headers, payload = outer.handle(req)
                except Exception as e:  # a bug in a fake shows up as a 599 the test will notice
                    status, headers, payload = 599, {}, f"fake error: {type(e).__name__}: {e}"
                if isinstance(payload, bytes):
                    data, ctype = payload, "application/octet-stream"
                elif isinstance(payload, str):
                    data, ctype = payload.encode("utf-8"), "text/plain; charset=utf-8"
                else:
                    data, ctype = json.dumps(payload).encode("utf-8"), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", headers.pop("Content-Type", ctype))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"
