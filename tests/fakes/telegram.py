"""A fake Telegram Bot API on 127.0.0.1 (ThreadingHTTPServer in a thread).

Serves ``POST /bot<token>/<method>`` for ``getMe``, ``sendMessage`` and ``getUpdates`` the way the
Bot API answers (``{"ok": true, "result": ...}``), parsing the form-encoded or JSON parameters that
python-telegram-bot sends. A wrong token answers 401 ``Unauthorized``. :meth:`FakeTelegram.script`
queues error replies for a method (e.g. 429 with ``parameters.retry_after``, 409 Conflict).
``getUpdates`` honours ``offset`` (confirmed updates are forgotten) and long-polls up to ``timeout``
seconds (capped at 1 s) while nothing is queued. :meth:`FakeTelegram.migrate` upgrades a group to a
supergroup: from then on every ``sendMessage`` to the old id answers 400 with
``parameters.migrate_to_chat_id`` (the old id never works again).
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

BOT_TOKEN = "123456789:AAF" + "sEcReTtOkEn" * 3
CHAT_ID = 4242


class FakeTelegram:
    def __init__(self, token: str = BOT_TOKEN) -> None:
        self.token = token
        self.calls: list[tuple[str, dict[str, Any]]] = []      # (method, params)
        self.sent: list[dict[str, Any]] = []                   # sendMessage params, in order
        self._scripts: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._updates: list[dict[str, Any]] = []
        self._migrated: dict[str, int] = {}                    # old chat id -> supergroup id
        self._next_update = 1
        self._next_msg = 1
        self._cond = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n).decode()
                ctype = self.headers.get("Content-Type", "")
                params: dict[str, Any] = json.loads(raw) if "json" in ctype and raw else dict(parse_qsl(raw))
                status, body = fake._answer(self.path, params)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    # --- test API ------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """What TB_TELEGRAM_BASE_URL is set to (python-telegram-bot appends the token)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/bot"

    def script(self, method: str, *replies: tuple[int, dict[str, Any]]) -> None:
        with self._cond:
            self._scripts.setdefault(method, []).extend(replies)

    def migrate(self, old: int, new: int) -> None:
        """The group ``old`` becomes the supergroup ``new``."""
        with self._cond:
            self._migrated[str(old)] = new

    def push_message(self, text: str, chat_id: int = CHAT_ID, user: str = "alice", user_id: int | None = None) -> int:
        """Queue an incoming text message (as if a user wrote to the bot; by default in their private chat, whose id
        is theirs); returns its update_id."""
        with self._cond:
            uid = self._next_update
            self._next_update += 1
            self._updates.append({"update_id": uid, "message": {
                "message_id": 500 + uid, "date": int(time.time()), "text": text,
                "chat": {"id": chat_id, "type": "private" if user_id is None else "supergroup"},
                "from": {"id": chat_id if user_id is None else user_id, "is_bot": False, "first_name": user,
                         "username": user}}})
            self._cond.notify_all()
            return uid

    def texts(self) -> list[str]:
        with self._cond:
            return [m["text"] for m in self.sent]

    def methods(self) -> list[str]:
        with self._cond:
            return [m for m, _ in self.calls]

    # --- server side ---------------------------------------------------------------------------
    def _answer(self, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        prefix = f"/bot{self.token}/"
        if not path.startswith(prefix):
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        method = path[len(prefix):]
        with self._cond:
            self.calls.append((method, params))
            script = self._scripts.get(method)
            if script:
                status, body = script.pop(0)
                return status, body
            if method == "getMe":
                return 200, {"ok": True, "result": {"id": 123456789, "is_bot": True, "first_name": "Tracer",
                                                    "username": "tracer_test_bot"}}
            if method == "sendMessage" and str(params.get("chat_id")) in self._migrated:
                return 400, {"ok": False, "error_code": 400,
                             "description": "Bad Request: group chat was upgraded to a supergroup chat",
                             "parameters": {"migrate_to_chat_id": self._migrated[str(params.get("chat_id"))]}}
            if method == "sendMessage":
                self.sent.append(params)
                mid = self._next_msg
                self._next_msg += 1
                return 200, {"ok": True, "result": {
                    "message_id": mid, "date": int(time.time()), "text": params.get("text", ""),
                    "chat": {"id": int(params.get("chat_id", 0)), "type": "private"}}}
            if method == "getUpdates":
                offset = int(params.get("offset") or 0)
                if offset:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                deadline = time.monotonic() + min(float(params.get("timeout") or 0), 1.0)
                while not self._updates and time.monotonic() < deadline:
                    self._cond.wait(deadline - time.monotonic())
                return 200, {"ok": True, "result": list(self._updates)}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def __enter__(self) -> "FakeTelegram":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
