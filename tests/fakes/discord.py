"""A fake Discord webhook endpoint on 127.0.0.1 (ThreadingHTTPServer in a thread).

``POST /api/webhooks/<id>/<token>`` records the JSON payload and answers like Discord: 200 with the
created message as JSON (``?wait=true``), or whatever was scripted with :meth:`FakeDiscord.script`
(e.g. 429 with ``retry_after`` in the body or the ``Retry-After`` header, 204 with no body, 404).
A wrong token answers 401 like Discord (``Invalid Webhook Token``).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

WEBHOOK_ID = "123456789012345678"
WEBHOOK_TOKEN = "wHkT0ken-" + "s3cr3t" * 10


@dataclass
class Reply:
    status: int = 200
    body: Any = None                 # dict -> JSON; None with 200 -> the created message
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None         # exact bytes (e.g. b"" for 204)


class FakeDiscord:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []     # {"path", "query", "json"}
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._next_id = 1000
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                parts = urlsplit(self.path)
                try:
                    payload = json.loads(raw or b"{}")
                except ValueError:
                    payload = None
                with fake._lock:
                    fake.requests.append({"path": parts.path, "query": parse_qs(parts.query), "json": payload})
                    reply = fake._script.pop(0) if fake._script else None
                    fake._next_id += 1
                    mid = fake._next_id
                if parts.path != f"/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}":
                    known = parts.path.startswith(f"/api/webhooks/{WEBHOOK_ID}/")
                    reply = Reply(401 if known else 404,
                                  {"message": "Invalid Webhook Token", "code": 50027} if known
                                  else {"message": "Unknown Webhook", "code": 10015})
                if reply is None:
                    reply = Reply(200, {"id": str(mid), "type": 0, "content": (payload or {}).get("content"),
                                        "channel_id": "1", "attachments": []})
                body = reply.raw if reply.raw is not None else json.dumps(reply.body or {}).encode()
                self.send_response(reply.status)
                if reply.raw is None:
                    self.send_header("Content-Type", "application/json")
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if reply.status != 204:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if reply.status != 204:
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        """The webhook URL (holds the secret token)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies`` in order, then 200 again."""
        with self._lock:
            self._script.extend(replies)

    def contents(self) -> list[str]:
        with self._lock:
            return [r["json"]["content"] for r in self.requests if r["json"]]

    def __enter__(self) -> "FakeDiscord":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
