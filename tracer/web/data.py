"""What the cockpit shows, as JSON-ready dicts: read from the DB (through :class:`~tracer.store.Store`), the candle
files (or, on a live feed, the bar sources) and the backtest folders. Nothing here writes."""
from __future__ import annotations

import csv
import json
import sqlite3
from dataclasses import replace
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracer.models import AGENTS
from tracer.notify import stats
from tracer.store import Store, parse_iso

JSON_COLUMNS = ("gates_json", "inputs_json", "bracket_json", "sizing_json", "detail_json", "doc_json",
                "summary_json", "targets_json")


def row(r: sqlite3.Row | None) -> dict[str, Any] | None:
    """A DB row as a dict, its ``*_json`` columns parsed (under the name without ``_json``)."""
    if r is None:
        return None
    out: dict[str, Any] = {}
    for k in r.keys():
        v = r[k]
        if k in JSON_COLUMNS:
            try:
                out[k[:-5]] = json.loads(v) if v else None
            except ValueError:
                out[k[:-5]] = v
        else:
            out[k] = None if isinstance(v, float) and not np.isfinite(v) else v
    return out


def rows(rs: Any) -> list[dict[str, Any]]:
    return [d for d in (row(r) for r in rs) if d is not None]


def known_agents(store: Store) -> list[str]:
    return sorted(set(stats.agents(store)) | set(AGENTS))


def _day0(d: Any) -> datetime:
    return datetime.combine(d, time(0), tzinfo=timezone.utc)


def agent_overview(store: Store, agent: str) -> dict[str, Any]:
    st = stats.agent_status(store, agent)
    acct = store.account(agent)
    week_pnl = None
    if st.clock is not None:
        monday = st.clock.date() - timedelta(days=st.clock.weekday())
        week_pnl = store.trade_stats(agent, _day0(monday))[1]
    reqs = store.pending_requests(agent)
    return {
        "agent": agent, "cycle": st.cycle, "clock": st.clock.isoformat() if st.clock else None, "state": st.state,
        "heartbeat_at": st.heartbeat_at.isoformat() if st.heartbeat_at else None, "equity": st.equity,
        "cash": st.cash, "initial_capital": acct["initial_capital"] if acct else None,
        "open_positions": st.open_positions, "paused": st.paused, "total_trades": st.total_trades,
        "total_pnl": st.total_pnl, "win_rate": st.total_wins / st.total_trades if st.total_trades else None,
        "pnl_today": st.today.pnl if st.today else None, "trades_today": st.today.trades if st.today else None,
        "pnl_week": week_pnl, "pending_requests": [dict(r) for r in reqs],
    }


def equity(store: Store, agent: str, since: datetime | None, limit: int) -> dict[str, Any]:
    pts = store.equity_series(agent, since, limit)
    return {"agent": agent, "points": [{"t": r["clock"], "equity": r["equity"], "cash": r["cash"]} for r in pts]}


def positions(store: Store, agent: str | None) -> list[dict[str, Any]]:
    out = []
    for a in [agent] if agent else known_agents(store):
        for p in store.open_positions(a):
            out.append({"agent": a, "symbol": p.symbol, "side": p.side.value, "qty": p.qty,
                        "entry_price": p.entry_price, "opened_at": p.opened_at.isoformat(), "stop_loss": p.stop_loss,
                        "take_profit": p.take_profit, "leverage": p.leverage,
                        "liquidation_price": p.liquidation_price, "entry_order_id": p.entry_order_id})
    return out


def explanation(store: Store, order_id: str) -> dict[str, Any] | None:
    """The same record as ``tracer explain`` (:meth:`Store.order_trail`), as JSON."""
    trail = store.order_trail(order_id)
    if trail is None:
        return None
    return {"signal": row(trail["signal"]), "run": row(trail["run"]), "risk_events": rows(trail["risk_events"]),
            "orders": [{"order": row(p["order"]), "venue_events": rows(p["venue_events"]), "fills": rows(p["fills"]),
                        "position": row(p["position"]), "funding": dict(p["funding"]), "trades": rows(p["trades"])}
                       for p in trail["orders"]]}


def health(settings: Any) -> dict[str, Any]:
    from tracer.ops.health import health as checks_of
    checks = checks_of(settings)
    worst = max((c.level for c in checks), default=0)
    return {"level": worst, "status": ("ok", "warning", "critical")[worst],
            "checks": [{"name": c.name, "level": c.level, "status": c.status, "message": c.message} for c in checks]}


def universe_run(store: Store, run_id: int) -> dict[str, Any] | None:
    got = store.latest_universe_doc(run_id)
    if got is None:
        return None
    from tracer.research import digest
    rid, doc = got
    top = int(doc.get("config", {}).get("top", 0) or 0)
    return {"id": rid, "as_of": doc.get("as_of"), "calls": rows(store.research_calls_of(rid)),
            "digest": digest.markdown(doc, top)}


def evals(store: Store, limit: int) -> list[dict[str, Any]]:
    return rows(store.eval_runs(limit))


# --- candles with the model's indicators and the agents' entries and exits ------------------------------------------
def _candle_file(settings: Any, symbol: str) -> Path | None:
    from tracer.data.replay import bundled_dir, candle_path
    for d in [settings.data_dir, bundled_dir()] if settings.data_dir else [bundled_dir()]:
        p = candle_path(d, symbol, "1h")
        if p.is_file():
            return p
    return None


def live_bars(settings: Any, symbol: str, n: int) -> pd.DataFrame | None:
    """TB_FEED=live: the last ``n`` closed hourly bars of ``symbol`` from the agents' bar sources (the same
    failover chain and validation as theirs); the news sources are not asked (a page view costs no API call)."""
    from tracer.data.factory import make_feed
    s = replace(settings, news_sources="", lookback_bars=min(max(n, 60), 5000), min_bars=1)
    from tracer.data.live import LiveFeed
    feed = make_feed(s, [symbol])
    assert isinstance(feed, LiveFeed)        # TB_FEED=live
    return feed.snapshot(feed.latest_time()).bars.get(symbol)


def candles(settings: Any, store: Store, symbol: str, limit: int, until: datetime | None = None) -> dict[str, Any]:
    """The last ``limit`` hourly bars of ``symbol`` up to ``until`` (default: the agents' latest clock), the
    trend mean the model uses (TB_TREND_WINDOW_H bars), RSI 14, and the filled orders with their reasons. On a
    live feed the bars come from the bar sources (:func:`live_bars`), else from the replay's candle files."""
    from tracer.data.replay import load_candles
    from tracer.signals.indicators import rsi, sma

    win = int(settings.trend_window_h or 240)       # unset (a profile without the trend model): a 10-day mean
    out: dict[str, Any] = {"symbol": symbol, "trend_window_h": win, "bars": [], "markers": []}
    if getattr(settings, "feed", "replay") == "live":
        try:
            got = live_bars(settings, symbol, limit + max(win, 15))
        except Exception as e:        # a source down or a symbol it does not list: the page says so
            out["error"] = f"live bars unavailable: {type(e).__name__}: {e}"
            return out
        if got is None:
            out["error"] = "live bars unavailable: every bar source refused this symbol"
            return out
        df = got
    else:
        path = _candle_file(settings, symbol)
        if path is None:
            return out
        df = load_candles(path)
        if until is None:
            clocks = [c for c in (parse_iso(r["clock"]) for r in (store.last_run(a) for a in known_agents(store))
                                  if r is not None) if c is not None]
            until = max(clocks) if clocks else None
    if until is not None:
        df = df[df.index <= until]
    df = df.iloc[-(limit + max(win, 15)):]
    close = df["close"].to_numpy(dtype=float)
    mean = np.asarray(sma(close, win)) if len(close) >= win else np.full(len(close), np.nan)
    r = np.asarray(rsi(close, 14)) if len(close) > 15 else np.full(len(close), np.nan)
    df, mean, r = df.iloc[-limit:], mean[-limit:], r[-limit:]

    def num(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    out["bars"] = [{"t": ts.isoformat().replace("+00:00", "Z"), "o": num(o), "h": num(h), "l": num(lo), "c": num(c),
                    "v": num(v), "mean": num(m), "rsi": num(rv)}
                   for ts, o, h, lo, c, v, m, rv in zip(df.index, df["open"], df["high"], df["low"], df["close"],
                                                        df["volume"], mean, r)]
    first = df.index[0].to_pydatetime() if len(df) else None
    out["markers"] = [{"t": m["fill_ts"], "price": m["fill_price"], "side": m["side"], "purpose": m["purpose"],
                       "reason": m["reason"], "agent": m["agent"], "order_id": m["client_order_id"]}
                      for m in store.symbol_orders(symbol)
                      if first is None or parse_iso(m["fill_ts"]) >= first - timedelta(hours=1)]
    return out


# --- backtests and studies on disk ---------------------------------------------------------------------------------
def backtest_runs(root: Path) -> list[dict[str, Any]]:
    """Every folder under ``root`` (two levels deep) with a backtest's metrics.json or a study's study.json."""
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for d in sorted({p.parent for pat in ("metrics.json", "*/metrics.json", "*/*/metrics.json", "study.json",
                                          "*/study.json", "*/*/study.json") for p in root.glob(pat)}):
        name = d.relative_to(root).as_posix() if d != root else "."
        kind = "study" if (d / "study.json").is_file() else "backtest"
        try:
            doc = json.loads((d / ("study.json" if kind == "study" else "metrics.json")).read_text())
        except (OSError, ValueError):
            continue
        metrics = doc if kind == "backtest" else {k: v for k, v in doc.items() if isinstance(v, (int, float, str))}
        out.append({"name": name, "kind": kind, "metrics": metrics, "has_equity": (d / "equity.csv").is_file()})
    return out


def backtest_equity(root: Path, name: str, max_points: int = 2000) -> dict[str, Any] | None:
    d = (root / name).resolve()
    if root.resolve() not in (d, *d.parents) or not (d / "equity.csv").is_file():
        return None
    with open(d / "equity.csv", newline="") as fh:
        pts = [{"t": r["ts"], "equity": float(r["equity"])} for r in csv.DictReader(fh)]
    step = max(1, len(pts) // max_points)
    return {"name": name, "points": pts[::step]}
