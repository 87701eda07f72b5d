"""The decision step shared by the live loop and the backtest (tracer.agents.kernel): the day roll, the book
it builds, the order of decisions and the paused operator switch, with the agents' real policies."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tracer.agents.hybrid import HybridPolicy
from tracer.agents.kernel import Day, exposures, recent_returns, roll_day, step
from tracer.config import load_settings
from tracer.models import Action, Position, PositionSide, Regime, Signal, Trade

T0 = datetime(2022, 3, 1, 23, tzinfo=timezone.utc)


def settings(**env: str):
    return load_settings({"TB_ACTIVE_PARAMS_PATH": "/nonexistent/active.json", "TB_PROFILE": "phase1c", **env},
                         dotenv_path=None)


def buy(symbol: str, conviction: float, ts: datetime = T0) -> Signal:
    reg = Regime(label="bull", trend_score=0.3, volatility="normal", annual_vol=0.6, volume="normal",
                 participation=1.0, confidence=0.8)
    return Signal(symbol=symbol, ts=ts, price=100.0, action=Action.BUY, direction=1, reason="buy", quality=6.0,
                  conviction=conviction, regime=reg, price_score=0.5, narrative=0.0, divergence=0.0,
                  divergence_trigger=0.5, volume_z=0.0, rsi=55.0, atr=2.0, size_fraction=1.0, headline_count=0,
                  scorer_id="")


def returns(*symbols: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {s: rng.normal(0, 0.01, 255) for s in symbols}


def test_a_day_starts_once_with_the_equity_then_and_never_again():
    d = roll_day(Day(), T0, 1000.0)
    assert d == Day("2022-03-01", 1000.0)
    assert roll_day(d, T0 + timedelta(minutes=30), 900.0) is d                 # same day: unchanged
    nxt = roll_day(d, T0 + timedelta(hours=1), 950.0)
    assert nxt == Day("2022-03-02", 950.0) and nxt.start() == datetime(2022, 3, 2, tzinfo=timezone.utc)
    assert roll_day(nxt, T0, 1.0) is nxt                                       # the clock went back
    other_zone = (T0 + timedelta(hours=2)).astimezone(timezone(timedelta(hours=-5)))   # 2022-03-01 20:00 -05:00
    assert roll_day(nxt, other_zone, 1.0) is nxt


def test_exposures_are_signed_at_the_last_price_or_the_entry():
    pos = {s: Position(agent="futures", symbol=s, side=side, qty=2.0, entry_price=10.0, opened_at=T0, entry_fee=0.0,
                       stop_loss=1.0, take_profit=100.0, trail_pct=0.0, best_price=10.0, max_hold_s=0,
                       entry_order_id=f"e-{s}")
           for s, side in (("BTC/USD", PositionSide.LONG), ("ETH/USD", PositionSide.SHORT))}
    assert exposures(pos, {"BTC/USD": 12.0}) == {"BTC/USD": 24.0, "ETH/USD": -20.0}


def test_recent_returns_keep_the_last_500_oldest_first():
    t = Trade(agent="hybrid", symbol="BTC/USD", side=PositionSide.LONG, qty=1.0, entry_ts=T0, entry_price=100.0,
              exit_ts=T0, exit_price=110.0, fees=0.0, funding=0.0, pnl=10.0, exit_reason="x",
              entry_order_id="e", exit_order_id="x")
    got = recent_returns([float(i) for i in range(600)], [t])
    assert len(got) == 500 and got[0] == 101.0 and got[-1] == pytest.approx(t.return_pct)


def test_without_signals_the_day_rolls_and_nothing_is_asked():
    def boom(*_a):
        raise AssertionError("the book is built only when there is something to decide")
    done = step(HybridPolicy(settings()), T0, Day(), 500.0, 500.0, {}, {}, [], {}, boom, boom)
    assert done.day == Day("2022-03-01", 500.0) and done.decisions == []


def test_best_conviction_first_and_the_daily_cap_counts_the_cycles_own_entries():
    pol = HybridPolicy(settings(TB_MAX_TRADES_PER_DAY="3"))
    sigs = [buy("ETH/USD", 4.0), buy("BTC/USD", 9.0), buy("SOL/USD", 6.0)]
    seen: list[Day] = []

    def today(d: Day) -> int:
        seen.append(d)
        return 1                        # one entry already today: room for two more
    done = step(pol, T0, Day("2022-02-28", 90_000.0), 100_000.0, 100_000.0, {}, {}, sigs,
                returns("BTC/USD", "ETH/USD", "SOL/USD"), today, lambda: ())
    assert seen == [Day("2022-03-01", 100_000.0)]          # counted in the day that just started
    assert [(s.symbol, d.decision) for s, d in done.decisions] == [
        ("BTC/USD", "enter"), ("SOL/USD", "enter"), ("ETH/USD", "blocked")]
    assert done.decisions[2][1].risk_rule == "max_trades_per_day"


def test_a_paused_agent_decides_but_enters_nothing():
    pol = HybridPolicy(settings())
    done = step(pol, T0, Day(), 100_000.0, 100_000.0, {}, {}, [buy("BTC/USD", 9.0)], returns("BTC/USD"),
                lambda d: 0, lambda: (), paused=True)
    (_, d), = done.decisions
    assert d.decision == "blocked" and d.risk_rule == "paused" and d.intent is None
