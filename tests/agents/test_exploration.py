"""Exploration windows: deterministic choice of the exploring bars, near-miss rule, fixed size, the
exploration tag (order sizing, reason, tracer explain), the daily trade cap, and no exploration in live
trading unless explicitly enabled."""
from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from rich.console import Console

from tracer.agents.futures import FuturesPolicy
from tracer.agents.hybrid import HybridPolicy
from tracer.agents.kernel import decide_all
from tracer.config import load_settings
from tracer.models import Action, Regime, Signal
from tracer.optimize import exploration as ex
from tracer.risk.limits import Book

T0 = datetime(2022, 1, 10, tzinfo=timezone.utc)


def settings(**env: str):
    base = {"TB_ACTIVE_PARAMS_PATH": "/nonexistent/active.json", "TB_EXPLORE_SHARE": "0.5"}
    base.update(env)
    return load_settings(base, dotenv_path=None)


def signal(symbol="BTC/USD", ts=T0, quality=0.8, conviction=2.5, direction=1, label="sideways",
           action=Action.HOLD) -> Signal:
    # phase1c gates: quality >= 1.0, conviction >= 2.0; this hold misses quality by 0.2
    reg = Regime(label=label, trend_score=0.0, volatility="normal", annual_vol=0.6, volume="normal",
                 participation=1.0, confidence=0.5)
    return Signal(symbol=symbol, ts=ts, price=40_000.0, action=action, direction=direction,
                  reason="hold: quality 0.80 < 1.00", quality=quality, conviction=conviction, regime=reg,
                  price_score=0.1, narrative=0.0, divergence=0.0, divergence_trigger=0.5, volume_z=0.0, rsi=50.0,
                  atr=400.0, size_fraction=0.0, headline_count=0, scorer_id="")


def book(trades_today=0, equity=100_000.0) -> Book:
    return Book(equity=equity, cash=equity, day_start_equity=equity, trades_today=trades_today, exposures={})


def returns(*symbols):
    rng = np.random.default_rng(0)
    return {s: rng.normal(0, 0.01, 255) for s in symbols}


def exploring_times(agent: str, symbol: str, share: float, n: int = 4) -> list[datetime]:
    out, k = [], 0
    while len(out) < n:
        ts = T0 + timedelta(hours=k)
        if ex.draw(agent, symbol, ts) < share:
            out.append(ts)
        k += 1
    return out


def test_draw_is_deterministic_and_uniform():
    a = ex.draw("hybrid", "BTC/USD", T0)
    assert a == ex.draw("hybrid", "BTC/USD", T0) and 0 <= a < 1
    assert a != ex.draw("futures", "BTC/USD", T0) and a != ex.draw("hybrid", "ETH/USD", T0)
    u = np.array([ex.draw("hybrid", "BTC/USD", T0 + timedelta(hours=k)) for k in range(20_000)])
    assert abs((u < 0.05).mean() - 0.05) < 0.006 and abs(u.mean() - 0.5) < 0.01


def test_near_miss_rule_and_share():
    s = settings()
    assert ex.near_miss(signal(), s)["missed"] == ["quality"]
    assert ex.near_miss(signal(quality=-0.5), s) is None                # 1.5 below: beyond the 1.0 margin
    assert ex.near_miss(signal(conviction=0.9), s) is None              # conviction 1.1 below the gate
    assert ex.near_miss(signal(direction=0), s) is None                 # no direction: nothing to explore
    assert ex.near_miss(signal(quality=2.0, action=Action.BUY), s) is None
    # in a bear regime a long needs 1 more quality: 1.8 is then a near miss of the required 2.0
    assert ex.near_miss(signal(quality=1.8, label="bear"), s)["required_quality"] == pytest.approx(2.0)
    yes = exploring_times("hybrid", "BTC/USD", 0.5)[0]
    assert ex.exploration("hybrid", signal(ts=yes), s)["draw"] < 0.5
    assert ex.exploration("hybrid", signal(ts=yes), settings(TB_EXPLORE_SHARE="0")) is None
    no = next(T0 + timedelta(hours=k) for k in range(100) if ex.draw("hybrid", "BTC/USD", T0 + timedelta(hours=k)) >= 0.5)
    assert ex.exploration("hybrid", signal(ts=no), s) is None


def test_exploration_is_off_by_default_and_in_live_trading():
    assert load_settings({"TB_ACTIVE_PARAMS_PATH": "/nonexistent"}, dotenv_path=None).explore_share == 0
    live = settings(TB_LIVE_TRADING="yes")
    ts = exploring_times("hybrid", "BTC/USD", 0.5)[0]
    assert ex.allowed(live) == (False, "live trading (TB_LIVE_TRADING=yes) without TB_EXPLORE_LIVE=true")
    d = HybridPolicy(live).decide(signal(ts=ts), None, book(), returns("BTC/USD"))
    assert d.decision == "none" and d.intent is None
    f = FuturesPolicy(live).decide(signal(ts=exploring_times("futures", "BTC/USD", 0.5)[0]), None, book(10_000),
                                   returns("BTC/USD"))
    assert f.decision == "none"
    # explicitly enabled: it explores
    on = settings(TB_LIVE_TRADING="yes", TB_EXPLORE_LIVE="true")
    assert HybridPolicy(on).decide(signal(ts=ts), None, book(), returns("BTC/USD")).decision == "enter"


def test_hybrid_exploration_entry_is_fixed_size_and_tagged():
    s = settings(TB_EXPLORE_NOTIONAL_USD="150")
    ts = exploring_times("hybrid", "BTC/USD", 0.5)[0]
    d = HybridPolicy(s).decide(signal(ts=ts), None, book(), returns("BTC/USD"))
    assert d.decision == "enter" and d.reason.startswith("exploration entry")
    o = d.intent.order
    assert o.purpose == "entry" and o.side.value == "buy" and o.reason.startswith("exploration: ")
    assert o.qty * 40_000 == pytest.approx(150, abs=1e-3)           # the fixed notional, not the 10% of equity
    tag = d.intent.sizing["exploration"]
    assert tag["missed"] == ["quality"] and tag["share"] == 0.5 and tag["notional_usd"] == 150
    assert d.intent.bracket.stop_distance == pytest.approx(s.stop_atr_mult * 400)
    # a bearish near miss is not explored by the long-only agent
    assert HybridPolicy(s).decide(signal(ts=ts, direction=-1), None, book(), returns("BTC/USD")).decision == "none"


def test_futures_exploration_is_1x_fixed_size_both_directions():
    s = settings()
    ts = exploring_times("futures", "ETH/USD", 0.5)[0]
    for direction, side in ((1, "buy"), (-1, "sell")):
        d = FuturesPolicy(s).decide(signal("ETH/USD", ts=ts, direction=direction), None, book(equity=10_000),
                                    returns("ETH/USD"))
        assert d.decision == "enter", d.reason
        o = d.intent.order
        assert o.leverage == 1.0 and o.side.value == side and o.purpose == "entry"
        assert o.qty * 40_000 == pytest.approx(100, abs=1e-2)
        assert d.intent.sizing["exploration"]["draw"] < 0.5
        assert d.intent.cash_needed == pytest.approx(o.qty * 40_000 * (1 + 2 * (s.futures_fee_bps + s.slippage_bps) / 1e4))
    # against a bull regime a short still needs TB_FUTURES_COUNTER_REGIME_QUALITY
    d = FuturesPolicy(s).decide(signal("ETH/USD", ts=ts, quality=1.5, direction=-1, label="bull"), None,
                                book(equity=10_000),
                                returns("ETH/USD"))
    assert d.decision == "none" and "regime" in d.reason


def test_exploration_counts_against_the_daily_trade_cap():
    s = settings(TB_MAX_TRADES_PER_DAY="2")
    pol = HybridPolicy(s)
    # the cap already reached: an exploration entry is blocked by the same rule as any entry
    ts = exploring_times("hybrid", "BTC/USD", 0.5)[0]
    d = pol.decide(signal(ts=ts), None, book(trades_today=2), returns("BTC/USD"))
    assert d.decision == "blocked" and d.risk_rule == "max_trades_per_day"
    assert d.risk_detail["exploration"]["missed"] == ["quality"]
    # one cycle, three near misses that all explore: only the cap's worth enter, and they count
    syms = ["SOL/USD", "ADA/USD", "XRP/USD", "BNB/USD", "LINK/USD", "DOGE/USD", "AVAX/USD", "ETH/USD"]
    ts = next(T0 + timedelta(hours=k) for k in range(10_000)
              if sum(ex.draw("hybrid", x, T0 + timedelta(hours=k)) < 0.5 for x in syms[:3]) == 3)
    sigs = [signal(x, ts=ts) for x in syms[:3]]
    out = decide_all(pol, sigs, {}, book(trades_today=1), returns(*syms[:3]))
    assert [d.decision for _, d in out].count("enter") == 1
    assert [d.risk_rule for _, d in out if d.decision == "blocked"] == ["max_trades_per_day"] * 2


def test_exploration_tag_is_stored_and_explained(tmp_path):
    from tracer.explain import explain
    from tracer.store import Store
    s = settings()
    ts = exploring_times("hybrid", "BTC/USD", 0.5)[0]
    sig = signal(ts=ts)
    d = HybridPolicy(s).decide(sig, None, book(), returns("BTC/USD"))
    st = Store(tmp_path / "t.db")
    with st.transaction():
        run = st.insert_run("hybrid", 1, ts, ts)
        sid = st.insert_signal(run, "hybrid", sig, d.decision, d.reason)
        st.insert_order(d.intent.order, run_id=run, signal_id=sid, price_est=sig.price, sizing=d.intent.sizing)
    row = st.conn.execute("SELECT sizing_json, reason FROM orders").fetchone()
    assert json.loads(row["sizing_json"])["exploration"]["missed"] == ["quality"]
    buf = io.StringIO()
    assert explain(st, Console(file=buf, width=250), d.intent.order.client_order_id) == 0
    text = buf.getvalue()
    assert "exploration" in text and "yes: draw" in text and "exploration entry" in text
    st.close()


@pytest.mark.parametrize("profile", ["phase1c", "trend", "trend-nomarket"])
def test_backtest_equals_live_with_exploration(tmp_path, profile):
    import logging
    from tracer.agents import hybrid as hybrid_agent
    from tracer.backtest.runner import run_backtest
    from tracer.store import parse_iso
    from tracer.sentiment.factory import make_scorer
    log = logging.getLogger("explore-test")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    s = load_settings({"TB_DB_PATH": str(tmp_path / "live.db"), "TB_LOG_DIR": str(tmp_path / "logs"),
                       "TB_ACTIVE_PARAMS_PATH": str(tmp_path / "none.json"), "TB_EXPLORE_SHARE": "0.5",
                       "TB_SYMBOLS": "BTC/USD,ETH/USD,SOL/USD", "TB_PROFILE": profile.split("-")[0],
                       # trend: with its market filter (BTC above its 20-day mean) and without
                       **({"TB_MARKET_FILTER": "none"} if profile == "trend-nomarket" else {}),
                       # the trend model holds for weeks and its gates at 1.0 leave few near misses: within 150
                       # bars a stricter quality gate gives the exploration near misses to take, and the seed's
                       # 2-ATR stop closes trades to compare (the evaluation is still the trend model's)
                       # (from mid-March 2022, a rally: before it the market filter refuses most longs)
                       **({"TB_MIN_SIGNAL_QUALITY": "3", "TB_STOP_ATR_MULT": "2",
                           "TB_REPLAY_START": "2022-03-14T00:00:00Z"} if profile != "phase1c" else {})},
                      dotenv_path=None)
    loop = hybrid_agent.build(s, log)
    loop.run(cycles=150)
    end = loop.clock
    rows = loop.store.conn.execute("SELECT t.*, o.sizing_json FROM trades t JOIN orders o ON "
                                   "o.client_order_id=t.entry_order_id WHERE t.agent='hybrid' "
                                   "ORDER BY t.exit_ts, t.entry_order_id").fetchall()
    loop.store.close()
    assert any('"exploration"' in (r["sizing_json"] or "") for r in rows)
    res = run_backtest(s, "hybrid", list(s.symbols), make_scorer(s, log), start=s.replay_start,
                       end=end, close_at_end=False)
    bt = sorted(res.trades, key=lambda t: (t.exit_ts, t.entry_order_id))
    assert [(t.entry_order_id, t.exit_ts) for t in bt] == [(r["entry_order_id"], parse_iso(r["exit_ts"])) for r in rows]
    for t, r in zip(bt, rows):
        assert t.pnl == pytest.approx(r["pnl"], rel=1e-6, abs=1e-6)
