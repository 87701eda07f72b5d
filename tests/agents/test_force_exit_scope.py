"""A forced exit applies to the positions held when the agent first saw the request: while one pinned symbol waits
(bad data), a position opened later for another symbol (a new entry on a fresh signal) is never force-closed by it,
and the pin survives a restart (a new Store on the same file)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from tracer.agents.controls import apply_force_exits, finish, settle_force_exits
from tracer.agents.protocols import Decision
from tracer.execution.broker import exit_order_id
from tracer.models import Action, Order, OrderState, Position, PositionSide, Regime, Side, Signal
from tracer.notify import controls
from tracer.store import Store

T0 = datetime(2022, 3, 1, 10, tzinfo=timezone.utc)
H = timedelta(hours=1)


def _sig(sym: str, ts: datetime) -> Signal:
    reg = Regime(label="bull", trend_score=0.3, volatility="normal", annual_vol=0.6, volume="normal",
                 participation=1.0, confidence=0.8)
    return Signal(symbol=sym, ts=ts, price=100.0, action=Action.HOLD, direction=0, reason="hold", quality=1.0,
                  conviction=1.0, regime=reg, price_score=0.0, narrative=0.0, divergence=0.0,
                  divergence_trigger=0.5, volume_z=0.0, rsi=50.0, atr=2.0, size_fraction=1.0, headline_count=0,
                  scorer_id="")


def _open(st: Store, sym: str, cid: str, at: datetime) -> Position:
    st.insert_order(Order(cid, "hybrid", sym, Side.BUY, 1.0, purpose="entry", created_at=at), run_id=None,
                    signal_id=None, price_est=100.0)
    st.set_order_state(cid, OrderState.FILLED, filled_qty=1.0, avg_price=100.0)
    return Position(agent="hybrid", symbol=sym, side=PositionSide.LONG, qty=1.0, entry_price=100.0, opened_at=at,
                    entry_fee=0.0, stop_loss=90.0, take_profit=0.0, trail_pct=0.0, best_price=100.0, max_hold_s=0.0,
                    entry_order_id=cid)


def _held(st: Store) -> dict[str, Position]:
    return {p.symbol: p for p in st.open_positions("hybrid")}


def _hold(sym: str, ts: datetime) -> tuple[Signal, Decision]:
    return _sig(sym, ts), Decision("hold_position", "h")


def _first_cycle_btc_closed_eth_waits(db: Path) -> tuple[Store, Position, Position]:
    """BTC and ETH held, ``/forceexit all``; at T0+1h ETH is not evaluated (bad data): BTC's exit goes out, ETH waits;
    BTC's exit fills and at T0+2h a NEW BTC position is opened on a fresh signal."""
    st = Store(db)
    with st.transaction():
        btc, eth = _open(st, "BTC/USD", "e-btc-1", T0), _open(st, "ETH/USD", "e-eth-1", T0)
        st.save_positions("hybrid", [btc, eth])
    out = controls.force_exit(st, "all", "telegram:op")
    assert out.ok and "BTC/USD" in out.message and "ETH/USD" in out.message
    t1 = T0 + H
    decisions, settled = apply_force_exits(st, "hybrid", [_hold("BTC/USD", t1)], _held(st))
    [(_, d)] = decisions
    assert d.decision == "exit" and d.intent is not None and d.intent.order.reason == "force_exit"
    assert settled == []                                           # ETH waits
    finish(st, settled, t1)
    t2 = T0 + 2 * H
    with st.transaction():
        new_btc = _open(st, "BTC/USD", "e-btc-2", t2)
        st.save_positions("hybrid", [eth, new_btc], [(btc, t2)])
    return st, eth, new_btc


def test_force_exit_all_does_not_close_a_position_opened_after_it_was_first_seen(tmp_path):
    st, eth, new_btc = _first_cycle_btc_closed_eth_waits(tmp_path / "t.db")
    # T0+3h: the new BTC position held and evaluated, ETH still not evaluated: BTC keeps its own decision
    t3 = T0 + 3 * H
    decisions, settled = apply_force_exits(st, "hybrid", [_hold("BTC/USD", t3)], _held(st))
    [(_, d)] = decisions
    assert d.decision == "hold_position" and d.intent is None, d.reason
    assert settled == []                                           # ETH (pinned) still waits
    # T0+4h: ETH evaluated: its pinned position is exited, BTC's new one is not; the request settles done
    t4 = T0 + 4 * H
    decisions, settled = apply_force_exits(st, "hybrid", [_hold("BTC/USD", t4), _hold("ETH/USD", t4)], _held(st))
    got = {sig.symbol: d for sig, d in decisions}
    assert got["BTC/USD"].decision == "hold_position" and got["BTC/USD"].intent is None
    assert got["ETH/USD"].decision == "exit" and got["ETH/USD"].intent is not None
    assert got["ETH/USD"].intent.order.client_order_id == exit_order_id(eth.entry_order_id, eth.exit_seq)
    assert settled == []                                           # done once ETH's exit closed it
    eth_exit = got["ETH/USD"].intent.order
    with st.transaction():
        st.insert_order(eth_exit, run_id=None, signal_id=None, price_est=100.0)
    settle_force_exits(st, None, "hybrid", _held(st), t4)          # submitted, not filled yet: still pending
    assert st.control_requests("hybrid")[0]["status"] == "pending"
    with st.transaction():
        st.set_order_state(eth_exit.client_order_id, OrderState.FILLED, filled_qty=1.0, avg_price=100.0)
        st.save_positions("hybrid", [new_btc], [(eth, t4)])
    settle_force_exits(st, None, "hybrid", _held(st), t4)
    req = st.control_requests("hybrid")[0]
    result = req["result"]
    assert req["status"] == "done" and "exit sent: ETH/USD" in result and "no longer held: BTC/USD" in result
    st.close()


def test_force_exit_pin_survives_a_restart(tmp_path):
    db = tmp_path / "t.db"
    st, eth, new_btc = _first_cycle_btc_closed_eth_waits(db)
    st.close()
    st = Store(db)                                                 # the agent restarts on the same file
    t3 = T0 + 3 * H
    assert {p.entry_order_id for p in _held(st).values()} == {eth.entry_order_id, new_btc.entry_order_id}
    decisions, settled = apply_force_exits(st, "hybrid", [_hold("BTC/USD", t3)], _held(st))
    [(_, d)] = decisions
    assert d.decision == "hold_position" and d.intent is None, d.reason
    assert settled == []
    # ETH closed by its own stop meanwhile: nothing pinned is held, the request is done without touching BTC
    with st.transaction():
        st.save_positions("hybrid", [new_btc], [(eth, t3)])
    st.close()
    st = Store(db)
    t4 = T0 + 4 * H
    decisions, settled = apply_force_exits(st, "hybrid", [_hold("BTC/USD", t4), _hold("ETH/USD", t4)], _held(st))
    assert all(d.decision == "hold_position" and d.intent is None for _, d in decisions)
    settle_force_exits(st, None, "hybrid", _held(st), t4)
    req = st.control_requests("hybrid")[0]
    assert req["status"] == "done" and "no longer held" in req["result"]
    st.close()
