"""Venue-side events explained from the DB (``tracer explain``, the cockpit's trade page and /explain read one trail,
``Store.order_trail``): a liquidation's or a close by hand's exit with its venue event, an adopted position's levels
kept whole, and funding booked after a close in every row one explanation shows (a price the venue could not confirm,
said on the exit: test_venue_money.py). Against the fake Binance USD-M venue through python-binance over HTTP."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from rich.console import Console

from tracer.execution.broker import Bracket, exit_order_id
from tracer.execution.venue import OrderSpec
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from tracer.explain import explain
from tracer.models import Order, Side

from venue_harness import BTC, KEY, SECRET, T0


def _explain(store, cid: str) -> str:
    buf = io.StringIO()
    assert explain(store, Console(file=buf, width=400), cid) == 0
    return buf.getvalue()


def _open_long(h, qty=0.01, stop=1000.0):
    h.entry(qty=qty, bracket=Bracket(stop_distance=stop, take_profit_distance=2 * stop, trail_pct=0.0, max_hold_s=0.0))
    h.settle()
    h.settle(T0 + timedelta(minutes=5))
    return h.broker.positions()[0]

def test_liquidation_exit_explains_with_its_venue_event(h, venue):
    """A liquidation on the venue is booked under an exit order of its own; explaining that exit shows the venue
    event that says so (``position_closed_on_venue``: the price, the forced orders, the cause)."""
    h.entry(lev=20, bracket=Bracket(stop_distance=0.0, take_profit_distance=0.0, trail_pct=0.0, max_hold_s=0.0))
    h.settle()
    pos = h.broker.positions()[0]
    venue.set_price("BTCUSDT", pos.liquidation_price * 0.98)
    trades = h.settle(T0 + timedelta(hours=3))
    assert [t.exit_reason for t in trades] == ["liquidation"]
    cid = trades[0].exit_order_id
    ev = h.store.venue_events("futures", "position_closed_on_venue")
    assert len(ev) == 1                                   # the event exists in the DB ...
    trail = h.store.order_trail(cid)
    kinds = [e["kind"] for e in trail["orders"][0]["venue_events"]]
    assert "position_closed_on_venue" in kinds, (
        f"exit {cid} (liquidation) explained without its venue event; event row client_order_id="
        f"{ev[0]['client_order_id']!r}")
    assert "position_closed_on_venue" in _explain(h.store, cid)


def test_close_by_hand_exit_explains_with_its_venue_event(hc, venue, clock):
    """A position closed by hand on the venue (its forced-order lookup failing, so after the grace the venue's own
    trades decide): the exit booked for it carries the venue event that says what happened."""
    h = hc
    _open_long(h)
    venue.set_price("BTCUSDT", 42300.0)
    h.broker.last_price[BTC] = 42300.0
    BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5).place_order(
        OrderSpec("web_manual_close_1", BTC, Side.SELL, 0.01, reduce_only=True))
    venue.inject("GET /fapi/v1/forceOrders", -1000, times=None)
    assert h.settle(T0 + timedelta(hours=1)) == []
    clock.advance(minutes=16)
    trades = h.settle(T0 + timedelta(hours=2))
    assert [t.exit_reason for t in trades] == ["closed_on_venue"]
    cid = trades[0].exit_order_id
    kinds = [e["kind"] for e in h.store.order_trail(cid)["orders"][0]["venue_events"]]
    assert "position_closed_on_venue" in kinds, (
        f"exit {cid} (closed by hand) has venue events {kinds} in its trail; all venue events: "
        f"{[(r['kind'], r['client_order_id']) for r in h.store.venue_events('futures')]}")


def test_adopted_position_levels_written_later_keep_their_entry_atr_in_the_db(h, venue):
    """A position opened by hand is adopted without levels; the next cycle gives it the policy's bracket (stop,
    target, and the ATR its volatility stop runs on). The DB keeps all of it: the explanation and a restart read it."""
    from tracer.execution.venue import OrderSpec
    c = h.broker.venues["binance"].client
    c.prepare_symbol("ETH/USD", 3)
    c.place_order(OrderSpec("manual-1", "ETH/USD", Side.BUY, 0.5))          # opened by hand on the venue
    h.settle()
    adopted = {p.symbol: p for p in h.broker.positions()}["ETH/USD"]
    assert "position_adopted" in h.events() and adopted.stop_loss == 0
    # the next cycle: AgentLoop.run_cycle -> broker.set_brackets({sym: policy.protective_bracket(sig)}) -> _write_book
    h.broker.set_brackets({"ETH/USD": Bracket(stop_distance=200.0, take_profit_distance=400.0, trail_pct=0.0,
                                              max_hold_s=0.0, entry_atr=100.0)})
    with h.store.transaction():
        h.store.save_positions("futures", h.broker.positions())
    live = {p.symbol: p for p in h.broker.positions()}["ETH/USD"]
    row = h.store.conn.execute("SELECT * FROM positions WHERE entry_order_id=?", (live.entry_order_id,)).fetchone()
    assert row["stop_loss"] == pytest.approx(live.stop_loss) and live.entry_atr == 100.0
    restored = {p.symbol: p for p in h.store.open_positions("futures")}["ETH/USD"]
    assert row["entry_atr"] == pytest.approx(live.entry_atr), (
        f"adopted position: broker entry_atr {live.entry_atr}, DB entry_atr {row['entry_atr']} "
        f"(restored from the DB: {restored.entry_atr}); explain says: "
        + [ln for ln in _explain(h.store, live.entry_order_id).splitlines() if 'entry ATR' in ln][0].strip())

def test_funding_booked_after_the_close_agrees_between_position_and_income_history(h, venue):
    """Funding the venue's income history shows only after the close is booked on the trade, in funding_payments
    and on the closed position's row: one explanation, one funding total."""
    pos = _open_long(h)
    paid = -venue.apply_funding("BTCUSDT", 0.0002)
    venue.inject("/fapi/v1/income", "empty", times=2)
    h.send(Order(exit_order_id(pos.entry_order_id, pos.exit_seq), h.broker.agent, BTC, Side.SELL, pos.qty,
                 reduce_only=True, purpose="exit", reason="signal", created_at=T0 + timedelta(hours=8)))
    h.settle(T0 + timedelta(hours=8))
    for k in (9, 10):
        h.settle(T0 + timedelta(hours=k))
    trail = h.store.order_trail(pos.entry_order_id)["orders"][0]
    n, income_paid = trail["funding"][0], trail["funding"][1]
    trade = trail["trades"][0]
    assert n == 1 and income_paid == pytest.approx(paid) and trade["funding"] == pytest.approx(-paid)
    text = [ln.strip() for ln in _explain(h.store, pos.entry_order_id).splitlines() if "funding" in ln]
    assert trail["position"]["funding_paid"] == pytest.approx(income_paid), (
        f"position row funding_paid {trail['position']['funding_paid']} vs income history {income_paid} vs trade "
        f"funding {trade['funding']}; explain prints: {text}")

