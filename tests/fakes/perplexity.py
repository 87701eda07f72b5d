"""Fake Perplexity chat completions: ``POST /chat/completions`` with ``Authorization: Bearer <key>``.

``script``: key -> list of planned answers, used one per request with that key (the last
one repeats): ``"ok"``, an int status (``401``, ``403``, ``500`` ...), or ``(429, "7")`` for a
429 with ``Retry-After: 7``, or ``"not_json"`` (a 200 whose body is not JSON). A key not in
``script`` gets 401. ``content`` is the model's answer text on ``ok``.
Every request is recorded with the key it used in ``calls`` as ``(key, status)``.
"""
from __future__ import annotations

from typing import Any

from fakes.server import FakeServer, Request, Response


class FakePerplexity(FakeServer):
    def __init__(self, script: dict[str, list[Any]], content: str = "[]"):
        super().__init__(self._route)
        self.script = {k: list(v) for k, v in script.items()}
        self.content = content
        self.calls: list[tuple[str, int]] = []
        self.bodies: list[dict] = []

    def _route(self, req: Request) -> Response:
        if req.method != "POST" or req.path != "/chat/completions":
            return 404, {}, {"error": "not found"}
        auth = req.headers.get("Authorization", "")
        key = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        self.bodies.append(req.json())
        plan = self.script.get(key)
        step: Any = 401 if not plan else (plan.pop(0) if len(plan) > 1 else plan[0])
        headers: dict[str, str] = {}
        if isinstance(step, tuple):
            step, retry_after = step
            headers["Retry-After"] = retry_after
        if step == "ok":
            self.calls.append((key, 200))
            return 200, {}, {"id": "x", "model": "sonar", "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": self.content}}]}
        if step == "not_json":
            self.calls.append((key, 200))
            return 200, {"Content-Type": "application/json"}, b"<html>oops</html>"
        self.calls.append((key, int(step)))
        return int(step), headers, {"error": {"message": f"status {step}", "type": "error"}}
