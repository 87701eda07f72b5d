"""A venue position whose entry's lookup has not booked it (tracer/execution/venue_broker/unbooked.py), against the
fake Binance USD-M venue through python-binance over HTTP: booked from the position only when it is that entry's
(same side), only while the venue does not read the order as working, after a wait that a restart does not start
again; an entry taken as a position's fill is never POSTed again."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tracer.execution.broker import Bracket
from tracer.execution.venue import OrderSpec
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from tracer.models import OrderState, Side
from tracer.store import row_to_order

from venue_harness import BTC, KEY, SECRET, Harness


def _hand(venue):
    return BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)


def test_an_entry_taken_as_the_fill_of_a_position_closed_later_is_not_posted_again(hc, venue, clock):
    """The entry's POST is unclear and processed late; its lookup keeps saying -2013. Past its grace it is taken
    as the venue position's fill; the operator, told the position has no stop, closes it by hand: the entry is
    never POSTed again (a second position from the same decision)."""
    venue.inject("POST /fapi/v1/order", "timeout", when="late", seconds=0.6)
    o = hc.entry(qty=0.01)
    cid = o.client_order_id
    assert hc.state(cid) == "new"
    venue.inject("GET /fapi/v1/order", -2013, times=None)       # "Order does not exist": a lagging history
    clock.advance(minutes=5)
    venue.process_late()                                         # processed a few minutes later
    hc.settle(clock.now)                                         # first sync that sees the position
    assert not hc.broker.positions() and "entry_fill_unread" in hc.events()
    clock.advance(minutes=10, seconds=30)                        # past the entry's grace, within _await_entry's
    hc.settle(clock.now)
    # the operator closes the unprotected position by hand
    _hand(venue).place_order(OrderSpec("web_manual_close", BTC, Side.SELL, 0.01, reduce_only=True))
    clock.advance(minutes=2)
    hc.settle(clock.now)
    assert venue.post_counts[cid] == 1, f"the entry was POSTed {venue.post_counts[cid]} times"
    p = venue.positions.get("BTCUSDT")
    assert not p or float(p["amt"]) == 0.0, f"a second position was opened: {p}"


def test_a_short_on_the_venue_is_not_booked_as_the_fill_of_a_buy_entry(hc, venue, clock):
    """A buy entry is tracked and every order lookup fails (5xx); the venue holds a SHORT of its symbol (opened
    by hand; the buy never executed): not the buy's fill, never booked as a long with a long's stop."""
    venue.inject("POST /fapi/v1/order", -1001)      # the buy is answered "internal error", never processed
    o = hc.entry(qty=0.01)
    cid = o.client_order_id
    _hand(venue).place_order(OrderSpec("web_manual_short", BTC, Side.SELL, 0.02))
    venue.inject("GET /fapi/v1/order", "5xx", times=None)
    hc.settle(clock.now)
    clock.advance(minutes=16)
    hc.settle(clock.now)
    clock.advance(minutes=1)
    hc.settle(clock.now)
    pos = hc.broker.positions()
    got = [(p.entry_order_id == cid, p.side.value, p.qty, p.entry_price, p.stop_loss) for p in pos]
    # expected: the buy is not the short's entry (adopted, or said and left alone); never a short with a long's stop
    assert hc.state(cid) != "filled" and not any(p.entry_order_id == cid for p in pos), \
        f"a venue SHORT booked as the fill of buy {cid}: {got}; events={hc.events()}"


def _restart(tmp_path, venue, clock):
    """As the loop restores: positions, and SUBMITTED / PARTIALLY_FILLED orders with their brackets."""
    h2 = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], clock=clock)
    pending = []
    for r in h2.store.orders_in_state("futures", OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED):
        br = json.loads(r["bracket_json"]) if r["bracket_json"] else None
        pending.append((row_to_order(r), Bracket(**br) if br else None))
    h2.broker.restore(h2.store.open_positions("futures"), pending, 0.0, 0.0, {})
    h2.broker.last_price[BTC] = 42000.0
    return h2


def test_a_restart_does_not_restart_the_wait_of_an_unprotected_venue_position(hc, venue, clock, tmp_path):
    """The entry filled; its lookups fail (5xx). The first sync says it (entry_fill_unread); the agent restarts
    14 minutes later: the wait runs from the first sighting (recorded), not from the restart."""
    o = hc.entry(qty=0.01)
    venue.inject("GET /fapi/v1/order", "5xx", times=None)
    clock.advance(minutes=1)
    hc.settle(clock.now)
    assert "entry_fill_unread" in hc.events() and not hc.broker.positions()
    clock.advance(minutes=14)
    h2 = _restart(tmp_path, venue, clock)
    h2.settle(clock.now)
    clock.advance(minutes=2)                      # 16 minutes after the first sighting
    h2.settle(clock.now)
    assert [p.entry_order_id for p in h2.broker.positions()] == [o.client_order_id], \
        f"still waiting 16 min after the first sighting: events={h2.events()}"


def test_an_entry_still_working_on_the_venue_is_not_booked_from_the_position(hc, venue, clock):
    """A market entry part-filled and still working (its cancel not taken), its lookup working all along: the
    venue reads it as working, so its own lookup books it (all of it, with its fee), never the position."""
    venue.inject("POST /fapi/v1/order", "partial", fraction=0.5, status="PARTIALLY_FILLED")
    o = hc.entry(qty=0.01)
    cid = o.client_order_id
    assert hc.state(cid) == "submitted"
    venue.inject("DELETE /fapi/v1/order", "5xx", times=None)        # its cancel (after finish_grace) not taken
    clock.advance(minutes=1)
    hc.settle(clock.now)
    clock.advance(minutes=16)
    hc.settle(clock.now)
    # the venue fills the rest of the entry
    vo = venue.orders_by_client_id[cid]
    with venue._lock:
        vo["status"], vo["executedQty"], vo["cumQty"] = "FILLED", "0.010", "0.010"
        venue._execute("BTCUSDT", "BUY", Decimal("0.005"), 42000.0, vo["orderId"])
    clock.advance(minutes=5)
    hc.settle(clock.now)
    clock.advance(minutes=5)
    hc.settle(clock.now)
    fills = hc.store.conn.execute("SELECT SUM(qty), SUM(fee) FROM fills WHERE client_order_id=?", (cid,)).fetchone()
    fee = 0.01 * 42000.0 * venue.taker_fee
    fills = tuple(fills)
    assert fills[0] == pytest.approx(0.01) and fills[1] == pytest.approx(fee), \
        f"entry booked as {fills} (expected 0.01, fee {fee}); state={hc.state(cid)}; events={hc.events()}"
    assert abs(hc.wallet_diff or 0.0) < 0.01, hc.wallet_diff
