"""The REST API, ``/api/v1`` (its OpenAPI schema: ``/api/v1/openapi.json``). Reads answer from the DB; the controls
write it exactly as the Telegram commands do (:mod:`tracer.notify.controls`), and the agents act at their next
cycle."""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Iterator, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from tracer.models import AGENTS
from tracer.notify import controls
from tracer.store import Store
from tracer.web import data
from tracer.web.auth import csrf_value

AgentName = Literal["hybrid", "futures"]
AgentOrAll = Literal["hybrid", "futures", "all"]


class RequestStore(Store):
    """A request's own connection: opened, used and closed in turn by the server's worker threads."""
    same_thread = False


def get_store(request: Request) -> Iterator[Store]:
    """One connection per request."""
    store = RequestStore(request.app.state.settings.db_path)
    try:
        yield store
    finally:
        store.close()


# --- response and request models --------------------------------------------------------------------------------
class Agent(BaseModel):
    agent: str
    cycle: int | None
    clock: str | None
    state: str
    heartbeat_at: str | None
    equity: float | None
    cash: float | None
    initial_capital: float | None
    open_positions: int
    paused: bool
    total_trades: int
    total_pnl: float
    win_rate: float | None
    pnl_today: float | None
    trades_today: int | None
    pnl_week: float | None
    pending_requests: list[dict[str, Any]]


class EquityPoint(BaseModel):
    t: str
    equity: float
    cash: float | None


class Equity(BaseModel):
    agent: str
    points: list[EquityPoint]


class PositionOut(BaseModel):
    agent: str
    symbol: str
    side: str
    qty: float
    entry_price: float
    opened_at: str
    stop_loss: float
    take_profit: float
    leverage: float
    liquidation_price: float | None
    entry_order_id: str


class TradeOut(BaseModel):
    id: int
    agent: str
    symbol: str
    side: str
    qty: float
    entry_ts: str
    entry_price: float
    exit_ts: str
    exit_price: float
    leverage: float
    fees: float
    funding: float
    pnl: float
    return_pct: float
    exit_reason: str
    entry_order_id: str
    exit_order_id: str
    signal_id: int | None


class SignalOut(BaseModel):
    id: int
    run_id: int
    agent: str
    symbol: str
    ts: str
    price: float | None
    action: str
    direction: int
    reason: str
    decision: str
    decision_reason: str
    quality: float | None
    conviction: float | None
    regime: str | None
    regime_confidence: float | None
    trend_score: float | None
    rsi: float | None
    atr: float | None
    gates: Any = None


class Check(BaseModel):
    name: str
    level: int
    status: str
    message: str


class Health(BaseModel):
    level: int
    status: str
    checks: list[Check]


class Session(BaseModel):
    csrf_token: str = Field(description="send it back as the X-CSRF-Token header of every POST")


class AgentTarget(BaseModel):
    agent: AgentOrAll = "all"


class ForceExit(BaseModel):
    symbol: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9/_.\-]+$",
                        description="a symbol such as BTC/USD, or all")
    agent: AgentOrAll = "all"


class ControlResult(BaseModel):
    ok: bool
    message: str
    agents: list[str]
    request_ids: list[int]


ERRORS: dict[int | str, dict[str, Any]] = {401: {"description": "missing or wrong token"},
                                           403: {"description": "CSRF check failed"}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such record"}}
router = APIRouter(prefix="/api/v1", responses=ERRORS)


def _agents(agent: str) -> list[str]:
    return list(AGENTS) if agent == "all" else [agent]


@router.get("/session", response_model=Session, summary="the CSRF token of this session")
def session(request: Request) -> Session:
    return Session(csrf_token=csrf_value(request.app.state.token))


@router.get("/agents", response_model=list[Agent], summary="both agents: status, equity, P&L today / week / all")
def agents(store: Store = Depends(get_store)) -> list[dict[str, Any]]:
    return [data.agent_overview(store, a) for a in data.known_agents(store)]


@router.get("/agents/{agent}/equity", response_model=Equity, summary="an agent's equity after each cycle")
def equity(agent: AgentName, since: datetime | None = None, limit: int = Query(2000, ge=1, le=20000),
           store: Store = Depends(get_store)) -> dict[str, Any]:
    return data.equity(store, agent, since, limit)


@router.get("/positions", response_model=list[PositionOut], summary="open positions")
def positions(agent: AgentName | None = None, store: Store = Depends(get_store)) -> list[dict[str, Any]]:
    return data.positions(store, agent)


@router.get("/trades", response_model=list[TradeOut], summary="closed trades, latest first")
def trades(agent: AgentName | None = None, symbol: str | None = Query(None, max_length=32),
           since: datetime | None = None, limit: int = Query(100, ge=1, le=5000),
           store: Store = Depends(get_store)) -> list[dict[str, Any]]:
    return data.rows(store.trades(agent, symbol, since, limit))


@router.get("/signals", response_model=list[SignalOut], summary="recorded signals with their scores, latest first")
def signals(agent: AgentName | None = None, symbol: str | None = Query(None, max_length=32),
            since: datetime | None = None, limit: int = Query(200, ge=1, le=5000),
            store: Store = Depends(get_store)) -> list[dict[str, Any]]:
    return data.rows(store.signals_list(agent, symbol, since, limit))


@router.get("/orders/{order_id}", responses=NOT_FOUND, summary="one order's explanation (the same record as `tracer explain`)")
def order(order_id: str, store: Store = Depends(get_store)) -> dict[str, Any]:
    got = data.explanation(store, order_id)
    if got is None:
        raise HTTPException(404, f"no order {order_id!r}")
    return got


@router.get("/candles", summary="hourly candles of a symbol with the model's indicators and the fills")
def candles(request: Request, symbol: str = Query(..., min_length=1, max_length=32),
            limit: int = Query(300, ge=10, le=3000), store: Store = Depends(get_store)) -> dict[str, Any]:
    return data.candles(request.app.state.settings, store, symbol.upper(), limit)


HEALTH_MAX_AGE_S = 20.0       # the checks read the DB (quick_check), logs and the disk: not on every page refresh


def cached_health(request: Request) -> dict[str, Any]:
    """The health checks, run again when the last run is older than :data:`HEALTH_MAX_AGE_S`."""
    st = request.app.state
    got: tuple[float, dict[str, Any]] | None = getattr(st, "health_cache", None)
    now = time.monotonic()
    if got is None or now - got[0] > HEALTH_MAX_AGE_S:
        got = (now, data.health(st.settings))
        st.health_cache = got
    return got[1]


@router.get("/health", response_model=Health, summary="the health checks (tracer health), at most 20 s old")
def health(request: Request) -> dict[str, Any]:
    return cached_health(request)


@router.get("/alerts", summary="the latest alerts and notifications")
def alerts(limit: int = Query(10, ge=1, le=200), store: Store = Depends(get_store)) -> list[dict[str, Any]]:
    return data.rows(store.recent_alerts(limit))


@router.get("/controls", summary="each agent's pause state and the operator requests")
def control_state(store: Store = Depends(get_store)) -> dict[str, Any]:
    return {"agents": {a: data.row(store.control_of(a)) for a in data.known_agents(store)},
            "requests": data.rows(store.control_requests(limit=50))}


@router.get("/research/universe-runs", summary="universe scans, latest first")
def universe_runs(limit: int = Query(20, ge=1, le=500), store: Store = Depends(get_store)) -> list[dict[str, Any]]:
    return data.rows(store.universe_runs(limit))


@router.get("/research/universe-runs/{run_id}", responses=NOT_FOUND, summary="one scan's calls, outcomes and digest")
def universe_run(run_id: int, store: Store = Depends(get_store)) -> dict[str, Any]:
    got = data.universe_run(store, run_id)
    if got is None:
        raise HTTPException(404, f"no universe run {run_id}")
    return got


@router.get("/research/evals", summary="evaluation runs of the research calls (hit rates)")
def research_evals(limit: int = Query(20, ge=1, le=500), store: Store = Depends(get_store)) -> list[dict[str, Any]]:
    return data.evals(store, limit)


@router.get("/backtests", summary="backtests and studies on disk (TB_BACKTEST_DIR)")
def backtests(request: Request) -> list[dict[str, Any]]:
    return data.backtest_runs(request.app.state.settings.backtest_dir)


@router.get("/backtests/equity", responses=NOT_FOUND, summary="a backtest's equity curve")
def backtest_equity(request: Request, name: str = Query(..., min_length=1, max_length=200)) -> dict[str, Any]:
    got = data.backtest_equity(request.app.state.settings.backtest_dir, name)
    if got is None:
        raise HTTPException(404, f"no backtest {name!r} with an equity.csv")
    return got


# --- controls (POST: the token and the X-CSRF-Token header) ---------------------------------------------------------
def _result(o: controls.Outcome) -> ControlResult:
    return ControlResult(ok=o.ok, message=o.message, agents=list(o.agents), request_ids=list(o.request_ids))


@router.post("/controls/pause", response_model=ControlResult, summary="stop new entries (exits still managed)")
def pause(body: AgentTarget, store: Store = Depends(get_store)) -> ControlResult:
    return _result(controls.set_entries(store, _agents(body.agent), False, "web", "pause"))


@router.post("/controls/stop-entry", response_model=ControlResult, summary="the same as pause")
def stop_entry(body: AgentTarget, store: Store = Depends(get_store)) -> ControlResult:
    return _result(controls.set_entries(store, _agents(body.agent), False, "web", "stopentry"))


@router.post("/controls/resume", response_model=ControlResult, summary="allow new entries again")
def resume(body: AgentTarget, store: Store = Depends(get_store)) -> ControlResult:
    return _result(controls.set_entries(store, _agents(body.agent), True, "web", "resume"))


@router.post("/controls/force-exit", response_model=ControlResult,
             summary="close a position (or all) at the holding agent's next cycle")
def force_exit(body: ForceExit, store: Store = Depends(get_store)) -> ControlResult:
    return _result(controls.force_exit(store, body.symbol, "web", _agents(body.agent)))


@router.post("/controls/reload", response_model=ControlResult,
             summary="read the configuration and promoted parameters again at the next cycle")
def reload(body: AgentTarget, store: Store = Depends(get_store)) -> ControlResult:
    return _result(controls.reload(store, _agents(body.agent), "web"))
