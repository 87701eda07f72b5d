"""The HTML pages, rendered on the server from the same reads as the API (:mod:`tracer.web.data`); the page's script
(``static/cockpit.js``) draws the charts from the numbers in their data attributes and keeps the live values fresh."""
from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tracer.store import Store
from tracer.web import data
from tracer.web.api import cached_health, get_store
from tracer.web.auth import clear_session, set_session

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
router = APIRouter(include_in_schema=False)

BACKTEST_KEYS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "trades", "win_rate", "profit_factor",
                 "final_equity")


def money(x: float | None) -> str:
    return "–" if x is None else f"{x:,.2f}"


def signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+,.2f}"


def sign(x: float | None) -> str:
    return "" if not x else ("up" if x > 0 else "down")


def fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:,.2f}" if abs(x) >= 1000 else f"{x:.4g}"
    return "" if x is None else str(x)


def held(gates: Any) -> str:
    """The gates of a signal that held (true), comma-joined."""
    if not isinstance(gates, dict):
        return ""
    return ", ".join(k for k, v in gates.items() if v is True)


templates.env.globals.update(money=money, signed=signed, sign=sign, fmt=fmt, held=held)


def render(request: Request, name: str, page: str, title: str, **ctx: Any) -> HTMLResponse:
    ctx.update(page=page, title=title, refresh_ms=request.app.state.refresh_ms)
    return templates.TemplateResponse(request, name, ctx)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"error": None})


@router.post("/login")
async def login(request: Request) -> Response:
    # the one form of the cockpit, read by hand (application/x-www-form-urlencoded: no multipart parser needed)
    token = parse_qs((await request.body()).decode("utf-8", "replace")).get("token", [""])[0]
    if not hmac.compare_digest(token.strip().encode(), request.app.state.token.encode()):
        return templates.TemplateResponse(request, "login.html", {"error": "wrong token"}, status_code=401)
    resp = RedirectResponse("/", status_code=303)
    set_session(resp, request.app.state.token)
    return resp


@router.post("/logout")
def logout() -> Response:
    resp = Response(status_code=204)
    clear_session(resp)
    return resp


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, store: Store = Depends(get_store)) -> HTMLResponse:
    agents = [data.agent_overview(store, a) for a in data.known_agents(store)]
    equity = {a["agent"]: data.equity(store, a["agent"], None, 2000)["points"] for a in agents}
    return render(request, "overview.html", "overview", "Overview", agents=agents, equity=equity,
                  positions=data.positions(store, None), trades=data.rows(store.trades(limit=15)),
                  alerts=data.rows(store.recent_alerts(8)), health=cached_health(request),
                  requests=data.rows(store.control_requests(limit=6)))


@router.get("/symbol", response_class=HTMLResponse)
def symbol_page(request: Request, symbol: str = "BTC/USD", store: Store = Depends(get_store)) -> HTMLResponse:
    s = request.app.state.settings
    symbols = sorted(set(s.symbols) | set(s.futures_symbols))
    sym = symbol.upper()
    return render(request, "symbol.html", "symbol", sym, symbol=sym, symbols=symbols,
                  candles=data.candles(s, store, sym, 300))


@router.get("/trade/{order_id}", response_class=HTMLResponse)
def trade_page(request: Request, order_id: str, store: Store = Depends(get_store)) -> HTMLResponse:
    ex = data.explanation(store, order_id)
    if ex is None:
        raise HTTPException(404, f"no order {order_id!r}")
    return render(request, "trade.html", "trade", f"Order {order_id}", order_id=order_id, ex=ex)


@router.get("/signals", response_class=HTMLResponse)
def signals_page(request: Request, agent: str | None = None, store: Store = Depends(get_store)) -> HTMLResponse:
    rows = data.rows(store.signals_list(agent, None, None, 300))
    series = [{"ts": r["ts"], "quality": r["quality"], "conviction": r["conviction"], "regime": r["regime"]}
              for r in reversed(rows) if r["quality"] is not None]
    return render(request, "signals.html", "signals", "Signals", signals=rows, series=series)


@router.get("/research", response_class=HTMLResponse)
def research_page(request: Request, run: int | None = None, store: Store = Depends(get_store)) -> HTMLResponse:
    runs = data.rows(store.universe_runs(50))
    chosen = run if run is not None else (runs[0]["id"] if runs else None)
    detail = data.universe_run(store, chosen) if chosen is not None else None
    return render(request, "research.html", "research", "Research", runs=runs, run=detail,
                  evals=data.evals(store, 20))


@router.get("/backtests", response_class=HTMLResponse)
def backtests_page(request: Request) -> HTMLResponse:
    root = request.app.state.settings.backtest_dir
    runs = data.backtest_runs(root)
    keys = [k for k in BACKTEST_KEYS if any(k in r["metrics"] for r in runs)] or \
        sorted({k for r in runs for k, v in r["metrics"].items() if isinstance(v, (int, float))})[:8]
    return render(request, "backtests.html", "backtests", "Backtests", runs=runs, keys=keys, root=str(root),
                  runs_json=json.dumps([r["name"] for r in runs]))
