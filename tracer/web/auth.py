"""Access to the cockpit: one token (``TB_WEB_TOKEN``), given as ``Authorization: Bearer <token>`` or through the
login page, which sets an HttpOnly, SameSite=Strict session cookie. Every request but the login page passes
:func:`guard`: without the token, the API answers 401 and a page sends to the login form. A state-changing request
(any method but GET/HEAD/OPTIONS) also needs the CSRF header ``X-CSRF-Token``, equal to the session's CSRF value
(double submit: a page reads it from the ``tb_csrf`` cookie; an API client from ``GET /api/v1/session``), and, from a
browser, an ``Origin`` of this server. Requests whose ``Host`` is not this server are refused (DNS rebinding)."""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path
from typing import Awaitable, Callable, Iterable

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

SESSION_COOKIE = "tb_session"
CSRF_COOKIE = "tb_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
OPEN_PATHS = ("/login",)


def derive(token: str, purpose: str) -> str:
    """A value derived from the token for one purpose (the cookie never holds the token itself)."""
    return hmac.new(token.encode(), f"tracer-web:{purpose}".encode(), hashlib.sha256).hexdigest()


def session_value(token: str) -> str:
    return derive(token, "session")


def csrf_value(token: str) -> str:
    return derive(token, "csrf")


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def authenticated_by(request: Request, token: str) -> str | None:
    """``"bearer"``, ``"cookie"`` or None (no valid token)."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and _same(auth[7:].strip(), token):
        return "bearer"
    if _same(request.cookies.get(SESSION_COOKIE), session_value(token)):
        return "cookie"
    return None


def csrf_ok(request: Request, token: str, how: str, origins: Iterable[str] | None) -> bool:
    want = csrf_value(token)
    if not _same(request.headers.get(CSRF_HEADER), want):
        return False
    if how == "cookie" and not _same(request.cookies.get(CSRF_COOKIE), want):
        return False
    origin = request.headers.get("origin")
    return origin is None or origins is None or origin in origins


def set_session(response: Response, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, session_value(token), httponly=True, samesite="strict", path="/")
    # readable by the page's script, which sends it back in the CSRF header
    response.set_cookie(CSRF_COOKIE, csrf_value(token), httponly=False, samesite="strict", path="/")


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


def make_guard(token: str, hosts: Iterable[str] | None = None, origins: Iterable[str] | None = None
               ) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """The middleware every request passes (see the module docstring)."""
    allowed_hosts = None if hosts is None else set(hosts)
    allowed_origins = None if origins is None else set(origins)

    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if allowed_hosts is not None and request.headers.get("host") not in allowed_hosts:
            return JSONResponse({"detail": "unknown host"}, status_code=400)
        path = request.url.path
        api = path.startswith("/api/")
        if path in OPEN_PATHS:
            origin = request.headers.get("origin")
            if request.method not in SAFE_METHODS and allowed_origins is not None and origin not in (None, *allowed_origins):
                return JSONResponse({"detail": "cross-site login refused"}, status_code=403)
            return await call_next(request)
        how = authenticated_by(request, token)
        if how is None:
            if api or request.method not in SAFE_METHODS:
                return JSONResponse({"detail": "missing or wrong token"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            return RedirectResponse("/login", status_code=303)
        if request.method not in SAFE_METHODS and not csrf_ok(request, token, how, allowed_origins):
            return JSONResponse({"detail": "CSRF check failed: send the X-CSRF-Token header (GET /api/v1/session)"},
                                status_code=403)
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'")
        return response

    return guard


_LINE = re.compile(r"^\s*(export\s+)?TB_WEB_TOKEN\s*=.*$", re.M)


def ensure_token(env_file: Path, current: str) -> tuple[str, bool]:
    """The token: ``current`` when set, else a new one written into ``env_file`` (created user-only, an empty
    ``TB_WEB_TOKEN=`` line replaced). Returns (token, generated)."""
    if current:
        return current, False
    token = secrets.token_urlsafe(32)
    text = env_file.read_text() if env_file.is_file() else ""
    line = f"TB_WEB_TOKEN={token}"
    if _LINE.search(text):
        text = _LINE.sub(line, text, count=1)
    else:
        text = (text if not text or text.endswith("\n") else text + "\n") + line + "\n"
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)                # the file holds a secret now, whatever its mode was
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return token, True
