"""Reliability (issue 10): a venue agent keeps managing its exits while the DB cannot take writes.

The hybrid agent on the fake Alpaca (real alpaca-py over HTTP), in process, with a short busy timeout.
A second process-like connection holds ``BEGIN EXCLUSIVE`` on the agent's DB (WAL: the agent can read,
not write) over a cycle in which a position's time stop (``TB_MAX_HOLD_H=1``) is due. The cycle cannot
commit; the agent must still send that exit (journaled first), send no entry, and when the lock goes,
book the venue's fill from the journal and reconciliation: DB and venue agree, nothing twice.
"""
from __future__ import annotations

import sqlite3
import subprocess
import stat
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from fakes.alpaca_trading import FakeAlpacaTrading
from procs import wait_for
from envs import agent_env
from test_rel_clock import BundledSource, FakeWall, quiet_logger
from tracer.agents import fault_journal
from tracer.config import load_settings
from tracer.store import Store, iso, utcnow
from tracer.models import Order, OrderType, Side

CASH = 100_000.0
PRICES = (("BTC/USD", 47000.0), ("ETH/USD", 3700.0), ("DOGE/USD", 0.17))



def _fault(loop, attr: str, default=None):
    """A field of the loop's storage fault (``default`` while there is none)."""
    v = None if loop.storage_fault is None else getattr(loop.storage_fault, attr)
    return default if v is None else v

def _settings(tmp: Path, venue: FakeAlpacaTrading, **extra: str):
    env = agent_env(tmp, TB_VENUE_HYBRID="alpaca", TB_ALPACA_TRADING_URL=venue.url, TB_ALPACA_API_KEY="ak",
                    TB_ALPACA_SECRET_KEY="as", TB_SYMBOLS=",".join(s for s, _ in PRICES),
                    TB_SENTIMENT_SCORER="lexicon", TB_VENUE_TIMEOUT_S="2", TB_REPLAY_START="2022-06-06T00:00:00Z",
                    TB_NOTIFY_CONSOLE="false", TB_MAX_HOLD_H="1")
    env.update(extra)
    return load_settings(environ=env, dotenv_path=None)


def _loop(tmp: Path, venue: FakeAlpacaTrading):
    from tracer.agents.hybrid import build
    settings = _settings(tmp, venue)
    log, h = quiet_logger(f"rel_storage_exits.{tmp.name}")
    store = Store(settings.db_path, busy_timeout_s=0.3)
    loop = build(settings, log, store)
    loop.storage_backoff_s, loop.storage_backoff_max_s = 0.05, 0.2
    return loop, h, settings


def _start_agent(make_loop) -> tuple[threading.Thread, dict]:
    """The agent in its own thread (its SQLite connection is that thread's), one run: cycles until it holds
    a position, then, once ``state["locked"]`` is set, on in the same run (the test holds the DB lock by
    then) until one more cycle commits. Returns when it holds one."""
    held, state = threading.Event(), {"locked": threading.Event()}

    def agent() -> None:
        loop = None
        try:
            loop, h, settings = make_loop()
            state.update(loop=loop, h=h, settings=settings)
            real = loop.run_cycle

            def run_cycle(now):
                res = real(now)
                if "held" in state:
                    loop.stop_event.set()             # the cycle under the lock committed, after the fault
                elif loop.broker.positions():
                    state["held"] = {p.symbol: p for p in loop.broker.positions()}
                    state["entry_clock"] = loop.processed_until
                    held.set()
                    if not state["locked"].wait(60):
                        loop.stop_event.set()
                return res
            loop.run_cycle = run_cycle
            loop.run(cycles=400)                      # an entry fills and the agent holds it within these
        except BaseException as e:  # noqa: BLE001  (reported by the test thread)
            state["error"] = e
        finally:
            state.setdefault("held", {})
            held.set()
            if loop is not None:
                loop.store.close()

    runner = threading.Thread(target=agent, daemon=True)
    runner.start()
    assert held.wait(300)
    assert "error" not in state, state.get("error")
    assert state["held"], "no position opened in 400 cycles"
    return runner, state


def _agrees_with_venue(c: sqlite3.Connection, venue: FakeAlpacaTrading) -> None:
    """DB == venue: open positions (a dust remainder is not one) and cash; no client id twice anywhere."""
    db_pos = {r[0]: round(r[1], 8) for r in
              c.execute("SELECT symbol, qty FROM positions WHERE agent='hybrid' AND status='open'")}
    venue_pos = {s: round(float(q), 8) for s, q in venue.holdings.items()
                 if q > 0 and q * venue.prices.get(s, Decimal(0)) >= 10}
    assert db_pos == venue_pos
    assert c.execute("SELECT cash FROM accounts WHERE agent='hybrid'").fetchone()[0] == \
        pytest.approx(float(venue.cash), abs=0.01)
    cids = [r[0] for r in c.execute("SELECT client_order_id FROM orders WHERE agent='hybrid'")]
    assert len(cids) == len(set(cids))
    venue_cids = [o["client_order_id"] for o in _orders(venue)]
    assert len(venue_cids) == len(set(venue_cids))


def _orders(venue: FakeAlpacaTrading) -> list[dict]:
    """The venue's orders in the order it took them, copied under its lock (its HTTP thread adds to them)."""
    with venue._lock:
        return list(venue.orders.values())


def _sells(venue: FakeAlpacaTrading) -> list[dict]:
    return [o for o in _orders(venue) if o["side"] == "sell"]


def _recovered(runner: threading.Thread, state: dict) -> None:
    """The agent's thread ends once the lock has gone: recovered, its last cycle committed."""
    runner.join(timeout=120)
    assert not runner.is_alive() and "error" not in state, state.get("error")
    assert state["loop"].storage_fault is None


@contextmanager
def _checked_db(dbfile: Path):
    """The agent's DB afterwards (rows by name), once ``PRAGMA integrity_check`` says ok."""
    c = sqlite3.connect(dbfile)
    c.row_factory = sqlite3.Row
    try:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        yield c
    finally:
        c.close()


def test_exits_are_sent_while_the_db_is_locked_and_booked_after(tmp_path, reliability):
    venue = FakeAlpacaTrading(("ak", "as"), cash=CASH)
    for sym, px in PRICES:
        venue.set_price(sym, px)
    with venue:
        runner, state = _start_agent(lambda: _loop(tmp_path, venue))
        loop, h, settings = state["loop"], state["h"], state["settings"]
        dbfile = Path(settings.db_path)
        journal = fault_journal.journal_path(settings.state_dir, "hybrid")
        orders_before = {o["client_order_id"] for o in _orders(venue)}
        sells_before = len(_sells(venue))
        locker = sqlite3.connect(dbfile, isolation_level=None, timeout=5)
        locker.execute("BEGIN EXCLUSIVE")                # the DB is locked by another writer
        state["locked"].set()
        try:
            wait_for(lambda: len(_sells(venue)) > sells_before or "error" in state, 60, "an exit sent during the lock")
            assert "error" not in state, state.get("error")
            assert loop.storage_fault is not None          # sent while the fault lasts, not after
            new = {o["client_order_id"]: o for o in _orders(venue) if o["client_order_id"] not in orders_before}
            assert all(o["side"] == "sell" for o in new.values()), new   # no entry during the fault
            exit_ids = sorted(o["client_order_id"] for o in new.values())
            # journaled before it was sent, user-only; nothing of it in the DB yet (it cannot be written)
            assert sorted(r["client_order_id"] for r in fault_journal.pending(journal)) == exit_ids
            assert stat.S_IMODE(journal.stat().st_mode) == 0o600
            ro = sqlite3.connect(f"file:{dbfile}?mode=ro", uri=True)
            assert ro.execute(f"SELECT COUNT(*) FROM orders WHERE client_order_id IN "
                              f"({','.join('?' * len(exit_ids))})", exit_ids).fetchone()[0] == 0
            ro.close()
            time.sleep(0.5)                                # more fault attempts: nothing sent twice
            assert sorted(o["client_order_id"] for o in _orders(venue) if o["client_order_id"] in exit_ids) \
                == exit_ids
        finally:
            locker.execute("ROLLBACK")                     # the lock goes
            locker.close()
        _recovered(runner, state)

    text = "\n".join(h.lines)
    assert "event=fault_exit_submitted" in text and "event=fault_orders_imported" in text
    assert not journal.exists()
    with _checked_db(dbfile) as c:
        for cid in exit_ids:
            o = c.execute("SELECT * FROM orders WHERE client_order_id=?", (cid,)).fetchone()
            assert o["state"] == "filled" and o["purpose"] == "exit" and o["reduce_only"] == 1 and o["venue"] == "alpaca"
            assert o["reason"] in ("time_stop", "stop_loss", "take_profit", "trailing_stop"), o["reason"]
            ev = c.execute("SELECT * FROM venue_events WHERE kind='sent_during_storage_fault' AND client_order_id=?",
                           (cid,)).fetchall()
            assert len(ev) == 1
            t = c.execute("SELECT * FROM trades WHERE exit_order_id=?", (cid,)).fetchone()
            assert t is not None and t["exit_reason"] == o["reason"]
            f = c.execute("SELECT qty, price FROM fills WHERE client_order_id=?", (cid,)).fetchall()
            v = venue.orders_for(cid)
            assert len(v) == 1 and len(f) == 1
            assert f[0]["qty"] == pytest.approx(float(v[0]["filled_qty"]))
            assert f[0]["price"] == pytest.approx(float(v[0]["filled_avg_price"]))
        _agrees_with_venue(c, venue)
    reliability("storage: venue agent manages exits while the DB is locked", trials=1, ok=True, faults_injected=1,
                exits_sent_during_fault=len(exit_ids), entries_sent_during_fault=0, duplicates=0,
                checked="hybrid agent on the fake Alpaca, DB held by BEGIN EXCLUSIVE over a cycle with a due time "
                        "stop: the exit is journaled (0600) and sent during the fault, no entry, nothing sent twice "
                        "over repeated attempts; after the lock: journal imported (venue_events row), the order "
                        "filled at the venue's price, the trade booked with its reason, DB == venue (positions, "
                        "cash), integrity_check ok")


H = timedelta(hours=1)


def _frames(symbols: list[str]) -> dict[str, pd.DataFrame]:
    from tracer.data.replay import ReplayFeed
    return {s: ReplayFeed(symbols)._series[s].frame for s in symbols}


def _venue_at_start(frames: dict[str, pd.DataFrame], before: datetime) -> FakeAlpacaTrading:
    """The fake Alpaca trading at the candles' price of the start (its price stays there)."""
    venue = FakeAlpacaTrading(("ak", "as"), cash=CASH)
    for sym, f in frames.items():
        venue.set_price(sym, float(f[f.index < pd.Timestamp(before)]["close"].iloc[-1]))
    return venue


def _live_loop(tmp: Path, venue: FakeAlpacaTrading, frames: dict[str, pd.DataFrame], wall: FakeWall, name: str):
    """The hybrid agent on a live feed over the bundled candles and a fake system clock; a 2 h time stop,
    other exits out of reach."""
    from tracer.agents.hybrid import HybridPolicy
    from tracer.agents.loop import AgentLoop, venue_broker
    from tracer.data.live import LiveFeed
    from tracer.data.sources.chain import SourceChain
    from tracer.sentiment.factory import make_scorer

    settings = _settings(tmp, venue, TB_MAX_HOLD_H="2", TB_STOP_ATR_MULT="50", TB_TAKE_PROFIT_ATR_MULT="100",
                         TB_TRAIL_PCT="0", TB_EXIT_ON_SELL_SIGNAL="false")
    log, h = quiet_logger(name)
    store = Store(settings.db_path, busy_timeout_s=0.3)
    symbols = list(frames)
    feed = LiveFeed(symbols, SourceChain([BundledSource(frames)]), [], interval=H, lookback=settings.lookback_bars,
                    min_bars=settings.min_bars, clock=wall, sleep=wall.sleep, settle=timedelta(seconds=5))
    broker = venue_broker(settings, "hybrid", store, log, H)
    loop = AgentLoop("hybrid", settings, feed, broker, store, make_scorer(settings, log, store),
                     HybridPolicy(settings), log, settings.hybrid_capital)
    loop.storage_backoff_s, loop.storage_backoff_max_s = 0.05, 0.2
    loop.wait_heartbeat_s = 10_000.0
    return loop, h, settings


def _live_world(tmp: Path, name: str):
    """The bundled candles from 2022-06-06 on a fake system clock, the fake Alpaca at their price, and a
    factory of agent processes on them (each its own loop, store and logger ``<name>.<process>``)."""
    frames = _frames([s for s, _ in PRICES])
    wall = FakeWall(datetime(2022, 6, 6, 0, 0, 5, tzinfo=timezone.utc))
    venue = _venue_at_start(frames, wall.t - H)

    def process(proc: str):
        return lambda: _live_loop(tmp, venue, frames, wall, f"{name}.{proc}")
    return wall, venue, process


def test_a_bar_closing_during_the_fault_gets_its_exit_live_feed(tmp_path, reliability):
    """A live feed on a fake system clock: the DB is locked over a cycle with nothing due; while the fault
    lasts the clock passes the next bar close, at which the position's time stop (2 h) falls due: the
    agent sends that exit during the fault, from the bar it fetched then."""
    wall, venue, process = _live_world(tmp_path, "rel_storage_exits.live")
    make_loop = process("A")

    with venue:
        runner, state = _start_agent(make_loop)
        loop, h, settings = state["loop"], state["h"], state["settings"]
        t0 = state["entry_clock"]
        assert all(p.opened_at == t0 for p in state["held"].values())
        dbfile, journal = Path(settings.db_path), fault_journal.journal_path(settings.state_dir, "hybrid")
        sells_before = len(_sells(venue))
        n_orders = len(venue.orders)
        locker = sqlite3.connect(dbfile, isolation_level=None, timeout=5)
        locker.execute("BEGIN EXCLUSIVE")
        state["locked"].set()
        try:
            # the cycle at t0 + 1 h cannot commit; nothing is due at it (time stop at 2 h, stops far away)
            wait_for(lambda: _fault(loop, "attempts", 0) >= 3 or "error" in state, 60,
                     "three storage fault attempts")
            assert loop.storage_fault.clock == iso(t0 + H)
            assert len(_sells(venue)) == sells_before and len(venue.orders) == n_orders, \
                [ln for ln in h.lines if "fault_exit" in ln or "event=cycle" in ln][-6:]
            wall.t += H                                   # the next bar closes while the DB is still locked
            wait_for(lambda: len(_sells(venue)) > sells_before or "error" in state, 60, "the exit of the new bar")
            assert "error" not in state, state.get("error")
            assert loop.storage_fault is not None
            new = _orders(venue)[n_orders:]
            assert [o["side"] for o in new] == ["sell"] * len(state["held"])
            rows = fault_journal.pending(journal)
            assert {r["symbol"] for r in rows} == set(state["held"])
            assert {r["reason"] for r in rows} == {"time_stop"} and {r["created_at"] for r in rows} == {iso(t0 + 2 * H)}
            # from now on the recovery attempts cannot even start (the journal must go to the DB first): the
            # fault loop itself fetches each new bar close for the positions' exits
            wall.t += H
            wait_for(lambda: _fault(loop, "bars_seen") == iso(t0 + 3 * H) or "error" in state, 60,
                     "the fault loop to see the bar closing at t0 + 3 h")
            ro = sqlite3.connect(f"file:{dbfile}?mode=ro", uri=True)
            assert ro.execute("SELECT MAX(clock) FROM runs").fetchone()[0] == iso(t0), "a cycle committed under the lock"
            ro.close()
            assert len(venue.orders) == n_orders + len(new)          # nothing more was due, nothing sent
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        _recovered(runner, state)
    with _checked_db(dbfile) as c:
        assert c.execute("SELECT COUNT(*) FROM positions WHERE agent='hybrid' AND status='open' AND opened_at=?",
                         (iso(t0),)).fetchone()[0] == 0
        trades = c.execute("SELECT * FROM trades WHERE exit_reason='time_stop'").fetchall()
        assert {t["symbol"] for t in trades} == set(state["held"])
        assert {t["exit_order_id"] for t in trades} == {r["client_order_id"] for r in rows}
        last = c.execute("SELECT clock, note FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        assert last["clock"] == iso(t0 + 3 * H) and "clock_gap" in last["note"]   # the bars it could not evaluate
        _agrees_with_venue(c, venue)           # the positions opened after the recovery too
    reliability("storage: a bar closing during the fault gets its exit (live feed)", trials=1, ok=True,
                faults_injected=1, exits_sent_during_fault=len(state["held"]), duplicates=0,
                checked="hybrid agent on the fake Alpaca with a live feed on a fake system clock; DB locked over "
                        "a cycle with nothing due, then the clock passes the next bar close: the time stop of that "
                        "bar is sent during the fault (journaled, created at that close); after the lock the trade "
                        "is booked as time_stop, the skipped clock recorded as a gap, DB cash == venue cash")


def _run_in_thread(make_loop) -> tuple[threading.Thread, dict]:
    """An agent process, in a thread (its SQLite connection is that thread's): ``run(cycles=1)``; it stops
    at ``state["loop"].stop_event`` as a process that dies (no recovery, the journal left behind)."""
    state: dict = {"ready": threading.Event()}

    def agent() -> None:
        loop = None
        try:
            loop, h, settings = make_loop()
            state.update(loop=loop, h=h, settings=settings)
            state["ready"].set()
            loop.run(cycles=1)
        except BaseException as e:  # noqa: BLE001  (reported by the test thread)
            state["error"] = e
        finally:
            state["ready"].set()
            if loop is not None:
                loop.store.close()

    runner = threading.Thread(target=agent, daemon=True)
    runner.start()
    assert state["ready"].wait(60) and "error" not in state, state.get("error")
    return runner, state


def _stop(runner: threading.Thread, state: dict) -> None:
    state["loop"].stop_event.set()
    runner.join(timeout=60)
    assert not runner.is_alive() and "error" not in state, state.get("error")


def test_an_agent_started_during_the_fault_manages_exits_and_never_resends(tmp_path, reliability):
    """Agents that die during a storage fault and start again while it lasts (the DB locked throughout):
    A holds positions and dies at the first fault; B starts under the lock: start() refuses to write or
    send, B restores what the DB says (reads only) and sends the time stop of the bar that closes during
    the fault (journaled), then dies; C starts under the lock, learns B's journal, and sends nothing twice.
    When the lock goes, C books the exits: DB == venue, each exit once on the venue."""
    wall, venue, process = _live_world(tmp_path, "rel_storage_exits.restart")
    with venue:
        runner, a = _start_agent(process("A"))
        t0, held = a["entry_clock"], a["held"]
        settings = a["settings"]
        dbfile, journal = Path(settings.db_path), fault_journal.journal_path(settings.state_dir, "hybrid")
        n_orders = len(venue.orders)
        locker = sqlite3.connect(dbfile, isolation_level=None, timeout=5)
        locker.execute("BEGIN EXCLUSIVE")
        a["locked"].set()
        try:
            # A: the cycle at t0 + 1 h cannot commit (nothing due at it); A dies during the fault
            wait_for(lambda: _fault(a["loop"], "attempts", 0) >= 2 or "error" in a, 60,
                     "A's storage fault")
            _stop(runner, a)
            assert not journal.exists() and len(venue.orders) == n_orders

            # B: starts under the lock; start() refuses (probe write), the fault path restores from the DB
            runner, b = _run_in_thread(process("B"))
            wait_for(lambda: _fault(b["loop"], "attempts", 0) >= 3 or "error" in b, 60,
                     "B's storage fault attempts")
            assert b["loop"].storage_fault.clock is None            # refused at start, before any cycle
            restore = [ln for ln in b["h"].lines if "event=fault_restore" in ln]
            assert len(restore) == 1 and f"after_clock={iso(t0)}" in restore[0] and \
                f"open_positions={len(held)}" in restore[0] and "journaled_before=0" in restore[0], restore
            assert len(venue.orders) == n_orders, "B sent something at start during the fault"
            wall.t += H                                   # the bar at which the 2 h time stop is due closes
            wait_for(lambda: len(venue.orders) >= n_orders + len(held) or "error" in b, 60, "B's exits")
            new = _orders(venue)[n_orders:]
            assert sorted((o["symbol"], o["side"]) for o in new) == sorted((s, "sell") for s in held)
            rows = fault_journal.pending(journal)
            assert sorted(r["client_order_id"] for r in rows) == sorted(o["client_order_id"] for o in new)
            assert {r["reason"] for r in rows} == {"time_stop"}
            _stop(runner, b)

            # C: starts under the lock with B's journal left behind: the same exits fall due, none is resent
            runner, c = _run_in_thread(process("C"))
            wait_for(lambda: _fault(c["loop"], "attempts", 0) >= 4 or "error" in c, 60,
                     "C's storage fault attempts")
            restore = [ln for ln in c["h"].lines if "event=fault_restore" in ln]
            assert len(restore) == 1 and f"journaled_before={len(rows)}" in restore[0], restore
            assert _fault(c["loop"], "bars_seen", "") >= iso(t0 + 2 * H)   # it looked at the bar
            assert len(venue.orders) == n_orders + len(new), "an exit was sent twice"
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        _recovered(runner, c)
    assert "event=fault_orders_imported" in "\n".join(c["h"].lines) and not journal.exists()
    with _checked_db(dbfile) as db:
        trades = db.execute("SELECT * FROM trades WHERE exit_reason='time_stop'").fetchall()
        assert {t["exit_order_id"] for t in trades} == {r["client_order_id"] for r in rows}
        for r in rows:
            assert len(venue.orders_for(r["client_order_id"])) == 1
        _agrees_with_venue(db, venue)
    reliability("storage: agents started again during the fault", trials=3, ok=True, faults_injected=1,
                restarts=2, exits_sent_during_fault=len(rows), duplicates=0,
                checked="hybrid agent on the fake Alpaca with a live feed; DB locked throughout: the agent dies at "
                        "the fault; a new one started under the lock sends nothing at start, restores from the DB "
                        "(reads only) and sends the time stop of a bar closing during the fault (journaled), then "
                        "dies; a third started under the lock learns that journal and sends nothing twice; after "
                        "the lock the exits are booked from the journal, DB == venue, each exit once on the venue")


def test_an_exit_written_but_never_sent_goes_out_during_a_start_time_fault(tmp_path, reliability):
    """A process wrote a position's exit as new and died before sending it; the agent starts again while
    the DB is locked: the exit (looked up on the venue first: not there) is sent during the fault, once,
    and booked after it."""
    from tracer.execution.broker import exit_order_id
    wall, venue, process = _live_world(tmp_path, "rel_storage_exits.unsent")
    with venue:
        runner, a = _start_agent(process("A"))
        a["loop"].stop_event.set()
        a["locked"].set()
        runner.join(timeout=60)
        assert not runner.is_alive() and "error" not in a, a.get("error")
        settings = a["settings"]
        dbfile = Path(settings.db_path)
        sym, pos = sorted(a["held"].items())[0]
        cid = exit_order_id(pos.entry_order_id)
        store = Store(settings.db_path)
        try:                                   # what the dead process had written, as it writes it
            with store.transaction():
                store.insert_order(Order(cid, "hybrid", sym, Side.SELL, pos.qty, OrderType.MARKET, reduce_only=True,
                                         purpose="exit", reason="time_stop", created_at=a["entry_clock"]),
                                   run_id=None, signal_id=None, price_est=None)
        finally:
            store.close()
        n_orders = len(venue.orders)
        locker = sqlite3.connect(dbfile, isolation_level=None, timeout=5)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            runner, b = _run_in_thread(process("B"))
            wait_for(lambda: venue.orders_for(cid) or "error" in b, 60, "the unsent exit sent during the fault")
            assert b["loop"].storage_fault is not None and b["loop"].storage_fault.clock is None
            restore = [ln for ln in b["h"].lines if "event=fault_restore" in ln]
            assert len(restore) == 1 and "new_in_db=1" in restore[0], restore
            wait_for(lambda: _fault(b["loop"], "attempts", 0) >= 4 or "error" in b, 60,
                     "more fault attempts")
            new = _orders(venue)[n_orders:]
            assert [(o["client_order_id"], o["side"]) for o in new] == [(cid, "sell")]   # once, and nothing else
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        _recovered(runner, b)
    with _checked_db(dbfile) as db:
        o = db.execute("SELECT * FROM orders WHERE client_order_id=?", (cid,)).fetchone()
        assert o["state"] == "filled"
        t = db.execute("SELECT * FROM trades WHERE exit_order_id=?", (cid,)).fetchone()
        assert t is not None and t["symbol"] == sym
        assert len(venue.orders_for(cid)) == 1
        _agrees_with_venue(db, venue)
    reliability("storage: an exit written but never sent, agent started during the fault", trials=1, ok=True,
                faults_injected=1, restarts=1, exits_sent_during_fault=1, duplicates=0,
                checked="hybrid agent on the fake Alpaca; a position's exit in the DB as new (the process died "
                        "before sending it); started again under a DB lock: the exit is looked up on the venue "
                        "(absent) and sent during the fault, once, nothing else sent; after the lock it is "
                        "filled and booked as a trade, DB == venue, integrity_check ok")


# --- the journal itself ---------------------------------------------------------------------------------
def _order(cid: str, reason: str = "stop_loss", agent: str = "hybrid") -> Order:
    return Order(cid, agent, "BTC/USD", Side.SELL, 0.5, OrderType.MARKET, reduce_only=True, purpose="exit",
                 reason=reason, created_at=utcnow())


def test_journal_round_trip_is_idempotent_and_ignores_a_torn_line(tmp_path):
    path = fault_journal.journal_path(tmp_path / "state", "hybrid")
    fault = {"since": iso(utcnow()), "error": "OperationalError: database is locked"}
    fault_journal.append(path, _order("tb-x-1"), "alpaca", fault)
    fault_journal.append(path, _order("tb-x-2", "time_stop"), "alpaca", fault)
    with path.open("a") as f:
        f.write('{"client_order_id": "tb-x-3", "agent": "hyb')      # a crash while the line was written
    assert [r["client_order_id"] for r in fault_journal.pending(path)] == ["tb-x-1", "tb-x-2"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store = Store(tmp_path / "t.db")
    try:
        with store.transaction():                                   # tb-x-1 already known to the DB
            store.insert_order(_order("tb-x-1"), run_id=None, signal_id=None, price_est=None)
        # both get their event; the known row keeps its columns and learns its venue
        assert fault_journal.import_into(store, path, "hybrid") == ["tb-x-1", "tb-x-2"]
        assert not path.exists()
        row = store.order("tb-x-2")
        assert (row["state"], row["venue"], row["reason"], row["reduce_only"]) == ("new", "alpaca", "time_stop", 1)
        assert (store.order("tb-x-1")["venue"], store.order("tb-x-1")["reason"]) == ("alpaca", "stop_loss")
        ev = store.venue_events("hybrid", "sent_during_storage_fault")
        assert sorted(e["client_order_id"] for e in ev) == ["tb-x-1", "tb-x-2"]
        fault_journal.append(path, _order("tb-x-2", "time_stop"), "alpaca", fault)   # a crash before the unlink
        assert fault_journal.import_into(store, path, "hybrid") == []
        assert len(store.venue_events("hybrid", "sent_during_storage_fault")) == 2
        assert fault_journal.import_into(store, path, "hybrid") == []       # nothing left, nothing twice
    finally:
        store.close()


def test_journal_import_keeps_the_file_when_the_db_cannot_take_it(tmp_path):
    path = fault_journal.journal_path(tmp_path / "state", "futures")
    fault_journal.append(path, _order("tb-x-9", agent="futures"), "binance", None)
    store = Store(tmp_path / "t.db", busy_timeout_s=0.1)
    locker = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError):
            fault_journal.import_into(store, path, "futures")
        assert [r["client_order_id"] for r in fault_journal.pending(path)] == ["tb-x-9"]
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    try:
        assert fault_journal.import_into(store, path, "futures") == ["tb-x-9"]
    finally:
        store.close()


def test_probe_write_fails_while_the_db_cannot_take_writes(tmp_path):
    """The recovery attempt's gate: start() (which reconciles and may send orders) runs only after it."""
    store = Store(tmp_path / "t.db", busy_timeout_s=0.1)
    locker = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    try:
        store.probe_write()
        locker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sqlite3.OperationalError):
            store.probe_write()
        locker.execute("ROLLBACK")
        store.probe_write()
        assert store.version() > 0                                  # nothing changed by the probe
    finally:
        locker.close()
        store.close()


def test_a_short_write_on_a_full_disk_leaves_no_torn_line(tmp_path):
    """The disk fills up in the middle of a journal line: the append fails (its order is not sent) and the
    file is cut back, so the next line, once there is room, is read back whole."""
    from test_rel_storage import _can_mount_tmpfs, small_tmpfs
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("needs root and tmpfs mounts (a real, small filesystem)")
    with small_tmpfs(tmp_path / "fs", "16k") as d:
        path = fault_journal.journal_path(d, "hybrid")
        fault_journal.append(path, _order("tb-x-1"), "alpaca", None)
        with pytest.raises(OSError):
            for i in range(1000):                                  # until the disk is full mid-line
                fault_journal.append(path, _order(f"tb-x-fill-{i:04d}", "x" * 300), "alpaca", None)
        assert path.read_bytes().endswith(b"\n")                  # the torn line was cut off
        n = len(fault_journal.pending(path))
        subprocess.run(["mount", "-o", "remount,size=1m", str(d)], check=True)   # room again
        fault_journal.append(path, _order("tb-x-after"), "alpaca", None)
        rows = fault_journal.pending(path)
        assert len(rows) == n + 1 and rows[-1]["client_order_id"] == "tb-x-after"
