"""The hybrid loop on the fake Alpaca (alpaca-py over HTTP, real SQLite, the bundled candles): what the risk book
counts before a position exists, the levels of a held coin that gets no bar, and the wallet check of an adopted coin.
Only the signal is scripted (which coin gets a BUY in which cycle); the policy, risk rules, kernel, loop and venue
broker are the real ones."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

import tracer.agents.loop as loop_mod
from envs import agent_env
from fakes.alpaca_trading import FakeAlpacaTrading
from tracer.agents.hybrid import build
from tracer.config import load_settings
from tracer.models import Action, Regime, Signal
from tracer.risk.limits import RiskLimits
from tracer.store import Store
from venue_harness import Clock

H = timedelta(hours=1)


def _loop(tmp: Path, venue: FakeAlpacaTrading, symbols: list[str], **extra: str):
    env = agent_env(tmp, TB_VENUE_HYBRID="alpaca", TB_ALPACA_TRADING_URL=venue.url, TB_ALPACA_API_KEY="ak",
                    TB_ALPACA_SECRET_KEY="as", TB_SYMBOLS=",".join(symbols), TB_SENTIMENT_SCORER="lexicon",
                    TB_VENUE_TIMEOUT_S="2", TB_NOTIFY_CONSOLE="false",
                    TB_MAX_CORRELATION="1.0", TB_PORTFOLIO_VAR_LIMIT="1", TB_RISK_PER_TRADE="0",
                    TB_STOP_ATR_MULT="50", TB_TAKE_PROFIT_ATR_MULT="100", TB_TRAIL_PCT="0",
                    **{"TB_EXIT_ON_SELL_SIGNAL": "false", "TB_VENUE_MAX_RETRIES": "1",
                       "TB_REPLAY_START": "2022-06-06T00:00:00Z", **extra})
    s = load_settings(environ=env, dotenv_path=None)
    store = Store(s.db_path)
    loop = build(s, logging.getLogger(f"spot-loop.{tmp.name}"), store)
    t0 = loop.start()
    clock = Clock(t0)
    loop.broker.clock = clock               # the broker's clock moves with the cycles
    return loop, store, clock, t0


@pytest.fixture
def buys(monkeypatch):
    """``buys(plan)``: the loop's signals are BUYs of the coins ``plan`` names at each cycle clock (a list), or the
    actions it gives them (a dict of coin -> Action), none else."""
    def install(plan: dict[datetime, list[str]]) -> None:
        seen: dict[str, object] = {}

        def prepare(sym, bars, heads, now, params, market=None):
            seen["now"] = now
            seen[sym] = float(bars["close"].iloc[-1])
            return sym

        def decide_many(prepared, params):
            now = seen["now"]
            reg = Regime("bull", 0.5, "normal", 0.5, "normal", 1.0, 0.8)
            acts = plan.get(now, [])
            acts = acts if isinstance(acts, dict) else {sym: Action.BUY for sym in acts}
            return [Signal(symbol=sym, ts=now, price=seen[sym], action=acts[sym], direction=1 if acts[sym] is Action.BUY else -1,
                           reason="scripted", quality=9.0, conviction=9.0, regime=reg, price_score=1.0, narrative=0.0,
                           divergence=0.0, divergence_trigger=0.0, volume_z=0.0, rsi=50.0, atr=100.0,
                           size_fraction=1.0, headline_count=0, scorer_id="lexicon")
                    for sym in prepared if sym in acts]

        monkeypatch.setattr(loop_mod, "prepare", prepare)
        monkeypatch.setattr(loop_mod, "decide_many", decide_many)
    return install


def test_an_entry_not_sent_in_its_cycle_counts_in_the_next_cycles_book(tmp_path, buys):
    """A BTC entry refused with 429 (Retry-After longer than the loop waits) stays written and unsent; the next cycle
    reconciles it after its own decisions. Those decisions must count it: with TB_MAX_POSITIONS=1 the ETH entry of
    that cycle is blocked, and the account ends with one coin, not two."""
    with FakeAlpacaTrading(("ak", "as"), cash=100_000.0) as venue:
        venue.set_price("BTC/USD", 30000.0)
        venue.set_price("ETH/USD", 1800.0)
        loop, store, clock, t1 = _loop(tmp_path, venue, ["BTC/USD", "ETH/USD"], TB_MAX_POSITIONS="1")
        buys({t1: ["BTC/USD"], t1 + H: ["ETH/USD"]})
        venue.inject("POST /v2/orders", "429", retry_after="120")
        loop.run_cycle(t1)
        assert not venue.orders
        clock.advance(hours=1)
        loop.run_cycle(t1 + H)
        assert sorted(s for s, q in venue.holdings.items() if q > 0) == ["BTC/USD"]
        assert [p.symbol for p in loop.broker.positions()] == ["BTC/USD"]
        blocked = store.conn.execute("SELECT symbol FROM risk_events WHERE agent='hybrid' AND rule='max_positions'")
        assert [r[0] for r in blocked.fetchall()] == ["ETH/USD"]


def test_a_held_coin_without_a_bar_is_stopped_at_the_venues_price(tmp_path, buys):
    """ETH on the account before the first start, outside the agent's symbols: adopted with a stop, and Alpaca has no
    stop orders, so the agent's own check is the stop. Without a bar of its own it is checked at the price the venue
    reports; the wallet check is not thrown off by the adopted coin's cost."""
    with FakeAlpacaTrading(("ak", "as"), cash=100_000.0) as venue:
        venue.set_price("BTC/USD", 30000.0)
        venue.set_price("ETH/USD", 1800.0)
        venue.holdings["ETH/USD"] = Decimal("5")
        venue.cost["ETH/USD"] = Decimal("9000")
        loop, store, clock, t = _loop(tmp_path, venue, ["BTC/USD"])
        buys({})
        loop.run_cycle(t)
        pos = {p.symbol: p for p in loop.broker.positions()}
        assert 0 < pos["ETH/USD"].stop_loss < 1800
        for k in (1, 2):                   # above its stop: held
            clock.advance(hours=1)
            loop.run_cycle(t + k * H)
        assert not [o for o in venue.orders.values() if o["symbol"] == "ETH/USD"]
        venue.set_price("ETH/USD", 900.0)  # far through the stop
        for k in (3, 4):
            clock.advance(hours=1)
            loop.run_cycle(t + k * H)
        sells = [o for o in venue.orders.values() if o["symbol"] == "ETH/USD" and o["side"] == "sell"]
        assert len(sells) == 1 and venue.holding("ETH/USD") == 0
        assert "ETH/USD" not in {p.symbol for p in loop.broker.positions()}
        exit_reason = store.conn.execute("SELECT exit_reason FROM trades WHERE symbol='ETH/USD'").fetchone()[0]
        assert exit_reason == "stop_loss"
        kinds = [r[0] for r in store.conn.execute("SELECT kind FROM venue_events").fetchall()]
        assert "position_adopted" in kinds and "wallet_anchored" in kinds and "wallet_mismatch" not in kinds


def test_a_stale_unsent_entry_does_not_block_the_fresh_entry_of_its_cycle(tmp_path, buys):
    """An entry left unsent for more than two bars (the venue refused it with 429, then was down) is cancelled as
    stale after the cycle's decisions: it does not count in that cycle's book, and the fresh BUY goes out."""
    with FakeAlpacaTrading(("ak", "as"), cash=100_000.0) as venue:
        venue.set_price("BTC/USD", 30000.0)
        loop, store, clock, t1 = _loop(tmp_path, venue, ["BTC/USD"])
        buys({t1: ["BTC/USD"], t1 + 3 * H: ["BTC/USD"]})
        venue.inject("POST /v2/orders", "429", retry_after="120")
        loop.run_cycle(t1)
        assert not venue.orders
        venue.down()
        for k in (1, 2):
            clock.advance(hours=1)
            loop.run_cycle(t1 + k * H)
        venue.up()
        clock.advance(hours=1)
        loop.run_cycle(t1 + 3 * H)
        states = [tuple(r) for r in store.conn.execute(
            "SELECT state, substr(state_reason, 1, 5) FROM orders WHERE purpose='entry' ORDER BY created_at")]
        assert states[0] == ("canceled", "stale") and venue.holding("BTC/USD") > 0
        assert not store.conn.execute("SELECT 1 FROM risk_events WHERE rule='position_open'").fetchall()


def test_a_coin_bought_by_hand_after_the_anchor_is_adopted_without_a_wallet_mismatch(tmp_path, buys):
    """Bought in the app after the wallet check was anchored: the cash paid for it, and the ledger counts it so;
    only a coin already held when this process anchored joins the anchor's offset (the test above)."""
    with FakeAlpacaTrading(("ak", "as"), cash=100_000.0) as venue:
        venue.set_price("BTC/USD", 30000.0)
        venue.set_price("ETH/USD", 1800.0)
        loop, store, clock, t = _loop(tmp_path, venue, ["BTC/USD"])
        buys({})
        loop.run_cycle(t)
        venue.cash -= Decimal("9000")                  # 5 ETH at 1,800, bought by hand
        venue.holdings["ETH/USD"] = Decimal("5")
        venue.cost["ETH/USD"] = Decimal("9000")
        for k in (1, 2, 3):
            clock.advance(hours=1)
            loop.run_cycle(t + k * H)
        assert "ETH/USD" in {p.symbol for p in loop.broker.positions()}
        assert abs(loop.broker.check_wallet() or 0.0) < 0.02
        kinds = [r[0] for r in store.conn.execute("SELECT kind FROM venue_events").fetchall()]
        assert "position_adopted" in kinds and "wallet_mismatch" not in kinds


def test_an_unsent_exit_of_a_position_closed_by_hand_never_sells_the_next_position(tmp_path, buys):
    """A SELL signal's exit meets a 429 and stays written, unsent; the coin is then sold by hand in the app, and the
    next sync books the position as closed on the venue. A fresh BUY opens the next position of that coin in the
    next cycle, whose reconciliation comes after its decisions: the old exit must not be sent then. Alpaca has no
    reduce-only flag, so it would sell what the account holds of the coin: the new position's coins."""
    with FakeAlpacaTrading(("ak", "as"), cash=100_000.0) as venue:
        venue.set_price("BTC/USD", 30000.0)
        loop, store, clock, t1 = _loop(tmp_path, venue, ["BTC/USD"], TB_EXIT_ON_SELL_SIGNAL="true")
        buys({t1: {"BTC/USD": Action.BUY}, t1 + H: {"BTC/USD": Action.SELL}, t1 + 2 * H: {"BTC/USD": Action.BUY}})
        loop.run_cycle(t1)
        a = loop.broker.positions()[0]
        venue.inject("POST /v2/orders", "429", retry_after="120")
        clock.advance(hours=1)
        loop.run_cycle(t1 + H)
        (exit_a,) = store.conn.execute("SELECT client_order_id, state FROM orders WHERE purpose='exit'").fetchall()
        assert exit_a["state"] == "new" and exit_a["client_order_id"].startswith(a.entry_order_id[:20])
        held = venue.holdings["BTC/USD"]                    # sold by hand in the app
        venue.cash += held * Decimal("30000") * Decimal("0.9975")
        venue.holdings["BTC/USD"] = Decimal(0)
        clock.advance(hours=1)
        loop.run_cycle(t1 + 2 * H)
        assert [o["side"] for o in venue.orders.values()] == ["buy", "buy"]       # nothing decided to sell B
        (b,) = loop.broker.positions()
        assert b.entry_order_id != a.entry_order_id and b.qty == pytest.approx(venue.holding("BTC/USD"))
        row = store.order(exit_a["client_order_id"])
        assert (row["state"], row["state_reason"]) == ("canceled", "its position is closed; never sent")


def test_a_stop_exit_refused_by_a_one_minute_rate_limit_waits_for_the_window_not_for_the_next_bar(tmp_path, buys):
    """Alpaca has no stop order: the agent's market exit is the stop. Its POST meets a 429 whose window resets in a
    few seconds (X-RateLimit-Reset, no Retry-After, as Alpaca answers), longer than TB_VENUE_MAX_WAIT_S: the exit
    waits for the window (TB_VENUE_EXIT_MAX_WAIT_S) and goes out in its cycle, not an hour later."""
    with FakeAlpacaTrading(("ak", "as"), cash=100_000.0) as venue:
        venue.set_price("BTC/USD", 40000.0)          # entry at 40,000; stop 50 x ATR 100 below, at 35,000
        loop, store, clock, t1 = _loop(tmp_path, venue, ["BTC/USD"], TB_VENUE_MAX_WAIT_S="1",
                                       TB_VENUE_MAX_RETRIES="3")
        buys({t1: ["BTC/USD"]})
        loop.run_cycle(t1)
        (pos,) = loop.broker.positions()
        assert pos.stop_loss == 35000.0 and venue.holding("BTC/USD") > 0
        venue.set_price("BTC/USD", 31000.0)          # the next bundled bar trades through the stop
        venue.inject("POST /v2/orders", "429", retry_after=None, reset_in_s=3)
        clock.advance(hours=1)
        loop.run_cycle(t1 + H)
        (row,) = store.conn.execute("SELECT state, reason FROM orders WHERE purpose='exit'").fetchall()
        assert tuple(row) == ("filled", "stop_loss") and venue.holding("BTC/USD") < 1e-4
        assert not loop.broker.positions()


def test_a_venue_agents_day_starts_with_its_equity_at_the_midnight_a_gap_spans(tmp_path, buys):
    """A venue's equity is its own, at its prices now, not marked by the bars of a gap: after a stall (or downtime)
    over midnight, the new UTC day must still start with the equity at its midnight, so the daily loss limit counts
    what a held coin lost between 00:00 and the first cycle of the day (here more than the limit: no new entry)."""
    with FakeAlpacaTrading(("ak", "as"), cash=100_000.0) as venue:
        loop, store, clock, t0 = _loop(tmp_path, venue, ["BTC/USD", "ETH/USD"], TB_REPLAY_START="2022-06-12T20:00:00Z",
                                       TB_DAILY_LOSS_LIMIT_PCT="0.005", TB_MAX_TRADE_NOTIONAL="1000000")

        def close_at(t, sym="BTC/USD"):       # the close of the bar that closes at t
            return float(loop.feed._series[sym].frame.loc[t - H, "close"])
        midnight = datetime(2022, 6, 13, tzinfo=timezone.utc)
        now = midnight + 10 * H
        buys({t0: ["BTC/USD"], now: ["ETH/USD"]})
        t = t0
        while t < midnight:                    # the cycles to 23:00 of the 12th, the venue's prices in step
            for sym in ("BTC/USD", "ETH/USD"):
                venue.set_price(sym, close_at(t, sym))
            clock.now = t
            loop.run_cycle(t)
            t += H
        (pos,) = loop.broker.positions()
        for sym in ("BTC/USD", "ETH/USD"):    # nothing runs until 10:00 of the 13th
            venue.set_price(sym, close_at(now, sym))
        clock.now = now
        equity_at_midnight = float(venue.cash) + pos.qty * close_at(midnight)
        loop.run_cycle(now)
        limit = RiskLimits.from_settings(loop.s).daily_loss_limit_pct
        assert loop.broker.equity() / equity_at_midnight - 1 <= -limit        # the day lost more than the limit
        assert loop.day == "2022-06-13" and loop.day_start_equity == pytest.approx(equity_at_midnight, rel=1e-6)
        rules = [r[0] for r in store.conn.execute("SELECT rule FROM risk_events WHERE symbol='ETH/USD'")]
        assert "daily_loss_limit" in rules
        assert not [o for o in venue.orders.values() if o["symbol"] == "ETH/USD"]
