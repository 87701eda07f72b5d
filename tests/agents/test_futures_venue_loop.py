"""The futures loop on the fake Binance USD-M (python-binance over HTTP, real SQLite, the bundled candles) and the fake
Bybit as its backup: the cooldown after an exit the agent sends itself, the risk book while an entry's POST is
unclear, and the daily loss limit after a gap over midnight. Only the signals are scripted (which coin gets which
action at which cycle clock); the policy, risk rules, kernel, loop and venue broker are the real ones."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

import tracer.agents.loop as loop_mod
from envs import agent_env
from fakes.binance_futures_venue import FakeBinanceFutures
from fakes.bybit_venue import FakeBybit
from tracer.agents.bar_processing import BarProcessing
from tracer.agents.futures import build
from tracer.config import load_settings
from tracer.models import Action, OrderState, Regime, Signal
from tracer.notify import controls
from tracer.store import Store
from venue_harness import Clock

H = timedelta(hours=1)
PRICES = {"BTCUSDT": 30000.0, "ETHUSDT": 1800.0, "SOLUSDT": 40.0}


def _loop(tmp: Path, venue: FakeBinanceFutures, symbols: list[str], **extra: str):
    env = agent_env(tmp, TB_VENUE_FUTURES="binance", TB_BINANCE_FUTURES_URL=venue.url, TB_BINANCE_API_KEY="ck",
                    TB_BINANCE_API_SECRET="cs", TB_FUTURES_SYMBOLS=",".join(symbols), TB_SENTIMENT_SCORER="lexicon",
                    TB_VENUE_TIMEOUT_S="2", TB_NOTIFY_CONSOLE="false", TB_MAX_CORRELATION="1.0",
                    TB_VENUE_MAX_RETRIES="1",
                    **{"TB_FUTURES_BACKUP_VENUE": "none", "TB_REPLAY_START": "2022-06-06T00:00:00Z",
                       "TB_FUTURES_VAR_LIMIT": "10", **extra})
    s = load_settings(environ=env, dotenv_path=None)
    store = Store(s.db_path)
    loop = build(s, logging.getLogger(f"futures-loop.{tmp.name}"), store)
    t0 = loop.start()
    clock = Clock(t0)
    loop.broker.clock = clock               # the broker's clock moves with the cycles
    return loop, store, clock, t0


@pytest.fixture
def signals(monkeypatch):
    """``signals(plan, atr_frac=0.01)``: at each cycle clock of ``plan`` the coins it names get its action (at the
    bar's close, an ATR of ``atr_frac`` of it), none else."""
    def install(plan: dict[datetime, dict[str, Action]], atr_frac: float = 0.01) -> None:
        seen: dict[str, object] = {}
        reg = Regime("bull", 0.5, "normal", 0.5, "normal", 1.0, 0.8)

        def prepare(sym, bars, heads, now, params, market=None):
            seen["now"] = now
            seen[sym] = float(bars["close"].iloc[-1])
            return sym

        def decide_many(prepared, params):
            acts = plan.get(seen["now"], {})   # type: ignore[call-overload]
            out = []
            for sym in prepared:
                if sym not in acts:
                    continue
                a, px = acts[sym], seen[sym]
                out.append(Signal(symbol=sym, ts=seen["now"], price=px, action=a,
                                  direction=1 if a is Action.BUY else (-1 if a is Action.SELL else 0),
                                  reason="scripted", quality=9.0, conviction=9.0, regime=reg, price_score=1.0,
                                  narrative=0.0, divergence=0.0, divergence_trigger=0.0, volume_z=0.0, rsi=50.0,
                                  atr=px * atr_frac, size_fraction=1.0, headline_count=0, scorer_id="lexicon"))
            return out

        monkeypatch.setattr(loop_mod, "prepare", prepare)
        monkeypatch.setattr(loop_mod, "decide_many", decide_many)
    return install


def _rules(store: Store, symbol: str | None = None) -> list[str]:
    q = "SELECT rule FROM risk_events WHERE agent='futures'" + (" AND symbol=?" if symbol else "")
    return [r[0] for r in store.conn.execute(q, (symbol,) if symbol else ())]


def test_a_signal_exit_booked_in_the_settlement_starts_the_cooldown(tmp_path, signals):
    """On a venue the agent's own exit fills and is booked in the cycle's settlement, after its decisions: the
    cooldown (TB_FUTURES_COOLDOWN_H) must start there, as after a restart that reads the close from the DB."""
    with FakeBinanceFutures("ck", "cs", wallet=10_000.0, prices=dict(PRICES)) as venue:
        loop, store, clock, t1 = _loop(tmp_path, venue, ["BTC/USD"], TB_FUTURES_COOLDOWN_H="24")
        signals({t1: {"BTC/USD": Action.BUY}, t1 + H: {"BTC/USD": Action.SELL}, t1 + 2 * H: {"BTC/USD": Action.BUY}})
        loop.run_cycle(t1)
        assert [p.symbol for p in loop.broker.positions()] == ["BTC/USD"]
        clock.advance(hours=1)
        loop.run_cycle(t1 + H)                 # the opposite signal closes it (a market exit, filled at once)
        assert [r[0] for r in store.conn.execute("SELECT exit_reason FROM trades")] == ["signal"]
        assert not loop.broker.positions()
        clock.advance(hours=1)
        loop.run_cycle(t1 + 2 * H)             # an hour after the close: inside the 24 h cooldown
        entries = store.conn.execute("SELECT COUNT(*) FROM orders WHERE purpose='entry'").fetchone()[0]
        assert entries == 1 and "cooldown" in _rules(store, "BTC/USD")


def test_an_entry_whose_post_was_unclear_counts_in_the_book_until_the_venue_answers(tmp_path, signals):
    """The BTC entry is processed by Binance but its answer times out, and the lookups meet an IP ban: it stays
    ``new`` (it may be a position) for more than two bars. With TB_FUTURES_MAX_POSITIONS=1 no ETH entry may go to
    the backup meanwhile; once the ban is over the BTC position is found, and the account holds one position."""
    with FakeBinanceFutures("ck", "cs", wallet=10_000.0, prices=dict(PRICES)) as bn, FakeBybit("yk", "ys") as by:
        by.set_price("BTCUSDT", 30000.0)
        by.set_price("ETHUSDT", 1800.0)
        loop, store, clock, t1 = _loop(tmp_path, bn, ["BTC/USD", "ETH/USD"], TB_FUTURES_MAX_POSITIONS="1",
                                       TB_FUTURES_BACKUP_VENUE="bybit", TB_BYBIT_URL=by.url,
                                       TB_BYBIT_API_KEY="yk", TB_BYBIT_API_SECRET="ys")
        signals({t1: {"BTC/USD": Action.BUY}, t1 + H: {"ETH/USD": Action.BUY}, t1 + 3 * H: {"ETH/USD": Action.BUY}})
        bn.inject("POST /fapi/v1/order", "timeout", when="after", seconds=2.5)
        bn.inject("GET /fapi/v1/order", 418, retry_after=5 * 3600)
        loop.run_cycle(t1)
        btc = store.conn.execute("SELECT state, venue FROM orders WHERE symbol='BTC/USD' AND purpose='entry'").fetchone()
        assert tuple(btc) == (OrderState.NEW.value, "binance") and "BTCUSDT" in bn.positions   # unconfirmed
        for k in (1, 2, 3):
            clock.advance(hours=1)
            loop.run_cycle(t1 + k * H)
        assert _rules(store, "ETH/USD") == ["max_positions", "max_positions"]     # at t+1h and at t+3h
        assert "ETHUSDT" not in by.positions
        loop.broker.venues["binance"].banned_until = None       # the ban is over: the BTC position is found
        clock.advance(hours=1)
        loop.run_cycle(t1 + 4 * H)
        assert [(p.symbol, loop.broker._pos_venue[p.symbol]) for p in loop.broker.positions()] == \
            [("BTC/USD", "binance")]


def _entries(store: Store) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in store.conn.execute("SELECT state, state_reason FROM orders WHERE purpose='entry'")]


def test_an_entry_never_sent_is_cancelled_when_the_agent_is_paused(tmp_path, signals):
    """The entry's POST meets a 429 (it stays ``new``, never sent); the operator pauses the agent: the next cycle's
    reconciliation cancels it instead of sending it."""
    with FakeBinanceFutures("ck", "cs", wallet=10_000.0, prices=dict(PRICES)) as venue:
        loop, store, clock, t1 = _loop(tmp_path, venue, ["BTC/USD"])
        signals({t1: {"BTC/USD": Action.BUY}, t1 + H: {"BTC/USD": Action.HOLD}})
        venue.inject("POST /fapi/v1/order", 429, retry_after=120)
        loop.run_cycle(t1)
        assert _entries(store) == [(OrderState.NEW.value, "not sent: rate limited")]
        assert controls.set_entries(store, ["futures"], False, "telegram:op", "pause").ok
        clock.advance(hours=1)
        loop.run_cycle(t1 + H)
        assert _entries(store) == [(OrderState.CANCELED.value, "not sent: agent paused")]
        assert "BTCUSDT" not in venue.positions
        store.close()


def test_an_entry_whose_post_was_unclear_is_not_cancelled_by_a_pause(tmp_path, signals):
    """Binance processed the entry but its answer timed out and the lookups meet a ban: it may be a position, so a
    pause leaves it to the venue's answer, and the position is found once the ban is over."""
    with FakeBinanceFutures("ck", "cs", wallet=10_000.0, prices=dict(PRICES)) as venue:
        loop, store, clock, t1 = _loop(tmp_path, venue, ["BTC/USD"])
        signals({t1: {"BTC/USD": Action.BUY}, t1 + H: {"BTC/USD": Action.HOLD}, t1 + 2 * H: {"BTC/USD": Action.HOLD}})
        venue.inject("POST /fapi/v1/order", "timeout", when="after", seconds=2.5)
        venue.inject("GET /fapi/v1/order", 418, retry_after=3600)
        loop.run_cycle(t1)
        assert "BTCUSDT" in venue.positions and _entries(store)[0][0] == OrderState.NEW.value
        assert controls.set_entries(store, ["futures"], False, "telegram:op", "pause").ok
        clock.advance(hours=1)
        loop.run_cycle(t1 + H)
        assert all(reason != "not sent: agent paused" for _, reason in _entries(store))
        loop.broker.venues["binance"].banned_until = None
        clock.advance(hours=1)
        loop.run_cycle(t1 + 2 * H)
        assert [p.symbol for p in loop.broker.positions()] == ["BTC/USD"]
        store.close()


def test_a_venue_stop_filled_in_a_gap_counts_the_profit_given_back_since_midnight(tmp_path, signals):
    """A long 4 % up at midnight (the venue's prices follow the bars) is stopped out, 1 % under its entry, while
    the agent is down until 10:00. The new day started with the profit it had at midnight: the day lost more than
    TB_FUTURES_DAILY_LOSS_LIMIT_PCT, though the trade lost little from its entry, and the ETH entry is refused."""
    with FakeBinanceFutures("ck", "cs", wallet=10_000.0, prices=dict(PRICES)) as bn:
        loop, store, clock, t0 = _loop(tmp_path, bn, ["BTC/USD", "ETH/USD"], TB_REPLAY_START="2022-06-15T20:00:00Z",
                                       TB_FUTURES_STOP_ATR_MULT="2", TB_FUTURES_DAILY_LOSS_LIMIT_PCT="0.02")

        def close_at(t, sym):                  # the close of the bar that closes at t
            return float(loop.feed._series[sym].frame.loc[t - H, "close"])

        def in_step(t):
            for sym in ("BTC/USD", "ETH/USD"):
                bn.set_price(sym.replace("/USD", "USDT"), close_at(t, sym))
        midnight = datetime(2022, 6, 16, tzinfo=timezone.utc)
        now = midnight + 10 * H
        signals({t0: {"BTC/USD": Action.BUY}, now: {"ETH/USD": Action.BUY}}, atr_frac=0.005)
        t = t0
        while t < midnight:                    # 20:00 .. 23:00 of the 15th
            in_step(t)
            clock.now = t
            loop.run_cycle(t)
            t += H
        (pos,) = loop.broker.positions()
        # the venue's equity at midnight: its wallet (less the entry fee) and the long at the bar closing then
        equity_at_midnight = 10_000.0 - pos.entry_fee + (close_at(midnight, "BTC/USD") - pos.entry_price) * pos.qty
        assert equity_at_midnight > 10_000.0 + 0.03 * pos.qty * pos.entry_price      # in profit at midnight
        in_step(now)                           # down through its stop (on the venue) by 10:00
        assert "BTCUSDT" not in bn.positions or bn.positions["BTCUSDT"]["amt"] == 0
        clock.now = now
        loop.run_cycle(now)
        (trade,) = store.conn.execute("SELECT pnl, exit_ts FROM trades").fetchall()
        # the trade lost less than the limit from the wallet it started with; the day lost more
        assert trade["exit_ts"] >= "2022-06-16" and -0.02 * 10_000.0 < trade["pnl"] < 0
        assert loop.broker.equity() / equity_at_midnight - 1 <= -0.02                    # the day lost over the limit
        assert loop.day == "2022-06-16" and loop.day_start_equity == pytest.approx(equity_at_midnight, rel=1e-3)
        assert "daily_loss_limit" in _rules(store, "ETH/USD") and "ETHUSDT" not in bn.positions


class _Gap(BarProcessing):
    def __init__(self) -> None:
        self.feed = type("Feed", (), {"interval": H})()   # type: ignore[assignment]


def test_a_missing_midnight_bar_never_credits_the_new_day_with_a_gain():
    """The price at midnight of a position open then is its symbol's close at midnight; without that bar, the
    more favourable to the position of the last close before it (else its entry) and its price later."""
    midnight = datetime(2022, 6, 16, tzinfo=timezone.utc)
    idx = pd.DatetimeIndex([midnight - 3 * H, midnight - 2 * H, midnight - H, midnight], tz="UTC")
    full = {"BTC/USD": pd.DataFrame({"close": [100.0, 101.0, 102.0, 90.0]}, index=idx)}
    holed = {"BTC/USD": full["BTC/USD"].drop(midnight - H)}          # the bar closing at midnight is missing
    g = _Gap()
    assert g._midnight_price("BTC/USD", full, midnight, 1, 80.0, 95.0) == 102.0     # the bar closing at midnight
    assert g._midnight_price("BTC/USD", holed, midnight, 1, 80.0, 95.0) == 101.0    # the long: the highest known
    assert g._midnight_price("BTC/USD", holed, midnight, 1, 80.0, 105.0) == 105.0
    assert g._midnight_price("BTC/USD", holed, midnight, -1, 80.0, 95.0) == 95.0    # the short: the lowest
    assert g._midnight_price("ETH/USD", holed, midnight, 1, 80.0, 70.0) == 80.0     # no bar at all: the entry
