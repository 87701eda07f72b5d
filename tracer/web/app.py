"""The FastAPI application: the guard (:mod:`tracer.web.auth`) in front of everything, the API, the pages and the
static files of the package."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from tracer.web import api, pages
from tracer.web.auth import make_guard


def create_app(settings: Any, token: str, *, hosts: Iterable[str] | None = None,
               origins: Iterable[str] | None = None, refresh_ms: int = 5000) -> FastAPI:
    """The cockpit over ``settings.db_path``. ``hosts`` / ``origins``: the Host and Origin values a request may
    carry (the server passes its own address; None: not checked, as for an in-process test client)."""
    if not token:
        raise ValueError("the web cockpit needs a token")
    app = FastAPI(title="Tracer Bullet cockpit", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/api/v1/openapi.json",
                  description="Read the agents' record and operate them. Every request needs the token "
                              "(Authorization: Bearer TB_WEB_TOKEN); every POST also the X-CSRF-Token header "
                              "(GET /api/v1/session).")
    app.state.settings = settings
    app.state.token = token
    app.state.refresh_ms = refresh_ms
    app.middleware("http")(make_guard(token, hosts, origins))
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).with_name("static"))), name="static")
    return app
