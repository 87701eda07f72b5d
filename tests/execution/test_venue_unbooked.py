"""A venue position whose entry's lookup has not booked it (tracer/execution/venue_broker/unbooked.py), against the
fake Binance USD-M venue through python-binance over HTTP: booked from the position only when it is that entry's
(same side), only while the venue does not read the order as working, after a wait that a restart does not start
again; an entry taken as a position's fill is never POSTed again."""
from __future__ import annotations

import contextlib
import json
import sqlite3
from decimal import Decimal

import pytest

from tracer.execution.broker import Bracket
from tracer.execution.venue import OrderSpec
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from tracer.models import OrderState, Side
from tracer.store import row_to_order

from fakes.binance_futures_venue import _Fault
from venue_harness import BTC, KEY, SECRET, T0, Clock, Harness, spot_harness


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


def test_entry_booked_from_position_is_not_tracked_again_and_booked_twice(hc, venue, clock):
    venue.inject("POST /fapi/v1/order", "timeout", when="late", seconds=0.6)
    o = hc.entry(qty=0.01, bracket=Bracket(stop_distance=500.0, take_profit_distance=0.0, trail_pct=0.0,
                                           max_hold_s=0.0))
    cid = o.client_order_id
    assert hc.state(cid) == "new"
    # processed late: half filled, the rest still working (a thin book); every order lookup fails meanwhile
    with venue._lock:
        todo, venue.late = venue.late, []
    for req, params in todo:
        venue._dispatch(req, params, _Fault("POST /fapi/v1/order", "partial", 1,
                                            {"fraction": 0.5, "status": "PARTIALLY_FILLED"}))
    venue.inject("GET /fapi/v1/order", "5xx", times=None)
    clock.advance(minutes=16)                       # past the unclear POST's grace
    hc.settle(clock.now)
    first = hc.state(cid)
    # the lookups work again, and the venue fills the rest of the entry
    venue.clear_faults()
    vo = venue.orders_by_client_id[cid]
    with venue._lock:
        vo["status"], vo["executedQty"], vo["cumQty"] = "FILLED", "0.010", "0.010"
        venue._execute("BTCUSDT", "BUY", Decimal("0.005"), 42000.0, vo["orderId"])
    for _ in range(3):
        clock.advance(minutes=3)
        hc.settle(clock.now)
    fills = tuple(hc.store.conn.execute("SELECT COUNT(*), SUM(qty) FROM fills WHERE client_order_id=?",
                                        (cid,)).fetchone())
    assert fills[1] == pytest.approx(0.01), \
        f"the venue filled 0.01 of {cid}; the DB books {fills} (state after the first sync: {first}, now " \
        f"{hc.state(cid)}); events={hc.events()}"


def test_entry_found_by_its_lookup_is_booked_with_its_fee_not_from_the_position(hc, venue, clock):
    venue.inject("POST /fapi/v1/order", "timeout", when="late", seconds=0.6)
    o = hc.entry(qty=0.01)
    cid = o.client_order_id
    assert hc.state(cid) == "new"
    hc.settle(clock.now)
    clock.advance(minutes=16)
    venue.process_late()                  # processed late: filled, its trades there
    venue.inject("GET /fapi/v1/order", -2013, times=1)   # the history shows it from the next read on
    hc.settle(clock.now)
    clock.advance(minutes=1)
    hc.settle(clock.now)
    fee = 0.01 * 42000.0 * venue.taker_fee
    row = hc.store.conn.execute("SELECT SUM(qty), SUM(fee) FROM fills WHERE client_order_id=?", (cid,)).fetchone()
    assert tuple(row) == (pytest.approx(0.01), pytest.approx(fee)), \
        f"booked {tuple(row)}, expected (0.01, {fee}): {hc.store.order(cid)['state_reason']}; " \
        f"wallet diff {hc.wallet_diff}; events={hc.events()}"


def test_entry_booked_from_a_position_grown_by_hand_fills_no_more_than_its_order(hc, venue, clock):
    o = hc.entry(qty=0.01)
    cid = o.client_order_id
    venue.inject("GET /fapi/v1/order", "5xx", times=None)
    venue.set_price("BTCUSDT", 43000.0)
    BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5).place_order(
        OrderSpec("web_manual_add", BTC, Side.BUY, 0.01))
    clock.advance(minutes=1)
    hc.settle(clock.now)
    clock.advance(minutes=16)
    hc.settle(clock.now)
    filled = hc.store.conn.execute("SELECT SUM(qty), AVG(price) FROM fills WHERE client_order_id=?",
                                   (cid,)).fetchone()
    assert filled[0] == pytest.approx(0.01), \
        f"entry of 0.01 booked as a fill of {filled[0]} at {filled[1]}; events={hc.events()}"


def test_tracked_entry_missed_past_the_grace_is_booked_with_its_bracket_not_adopted(hc, venue, clock):
    br = Bracket(stop_distance=500.0, take_profit_distance=2000.0, trail_pct=0.0, max_hold_s=0.0)
    o = hc.entry(qty=0.01, bracket=br)
    cid = o.client_order_id
    assert hc.state(cid) == "submitted"
    venue.inject("GET /fapi/v1/order", -2013, times=None)      # "Order does not exist": a history that lags
    clock.advance(minutes=1)
    hc.settle(clock.now)
    assert "entry_fill_unread" in hc.events() and not hc.broker.positions()
    clock.advance(minutes=16)
    hc.settle(clock.now)
    pos = hc.broker.positions()
    got = [(p.entry_order_id, p.qty, p.stop_loss, p.take_profit) for p in pos]
    assert len(pos) == 1 and pos[0].entry_order_id == cid and pos[0].stop_loss == pytest.approx(41500.0), \
        f"entry {cid} is {hc.state(cid)} ({hc.store.order(cid)['state_reason']}); positions={got}; events={hc.events()}"


def test_spot_anchor_made_while_an_unclear_entry_is_bought_is_no_cash_counted_twice(alpaca, tmp_path):
    clock = Clock(T0)
    h = spot_harness(tmp_path, alpaca, clock, timeout_s=0.5)
    alpaca.inject("POST /v2/orders", "timeout", delay_s=0.7)          # processed; the answer never comes
    alpaca.inject("GET /v2/orders:by_client_order_id", "503", times=10_000)   # its lookups fail
    o = h.entry(qty=0.01, bracket=Bracket(stop_distance=500.0, take_profit_distance=0.0, trail_pct=0.0,
                                          max_hold_s=0.0))
    cid = o.client_order_id
    assert h.state(cid) == "new" and alpaca.holding(BTC) > 0.009
    h.settle(clock.now)                        # the position is waited for; the wallet check anchors
    assert not h.broker.positions()
    clock.advance(minutes=16)
    h.settle(clock.now)
    clock.advance(minutes=1)
    h.settle(clock.now)
    assert [p.entry_order_id for p in h.broker.positions()] == [cid]
    # the coin fee Alpaca took (25 bps, ~1.05 USD) is the only difference the booking may leave ("fee assumed 0")
    assert abs(h.wallet_diff) < 2.0, f"wallet difference {h.wallet_diff:+.2f} after booking {cid} from the " \
                                     f"position; events={h.events()}"


def test_wait_survives_a_storage_fault_and_is_said_once(hc, venue, clock, monkeypatch):
    o = hc.entry(qty=0.01)
    cid = o.client_order_id
    venue.inject("GET /fapi/v1/order", "5xx", times=None)          # its lookups fail

    @contextlib.contextmanager
    def locked():
        raise sqlite3.OperationalError("database is locked")
        yield

    with monkeypatch.context() as m:                               # the storage fault: 20 minutes of syncs
        m.setattr(hc.store, "transaction", locked)
        for _ in range(20):
            clock.advance(minutes=1)
            hc.broker.sync(clock.now)
            hc.broker.take_outbox()
    said = sum("entry fill unread" in a for a in hc.alerts)
    assert said == 1, f"'entry fill unread' of {cid} alerted {said} times during the fault"


@pytest.mark.parametrize("lookup_fault", ["5xx", -2013])
def test_entry_seen_working_then_filled_is_booked_and_protected_when_its_lookups_fail(hc, venue, clock, lookup_fault):
    venue.inject("POST /fapi/v1/order", "partial", fraction=0.5, status="PARTIALLY_FILLED")
    o = hc.entry(qty=0.01)
    cid = o.client_order_id
    assert hc.state(cid) == "submitted"
    clock.advance(minutes=1)
    hc.settle(clock.now)                     # read as working: _working_since set
    assert cid in hc.broker._working_since
    # its order lookups now fail; the venue fills the rest of it (the open orders no longer list it)
    venue.inject("GET /fapi/v1/order", lookup_fault, times=None)
    vo = venue.orders_by_client_id[cid]
    with venue._lock:
        vo["status"], vo["executedQty"], vo["cumQty"] = "FILLED", "0.010", "0.010"
        venue._execute("BTCUSDT", "BUY", Decimal("0.005"), 42000.0, vo["orderId"])
    for _ in range(12):                      # six hours, a cycle every 30 minutes
        clock.advance(minutes=30)
        hc.settle(clock.now)
    held = float(venue.positions["BTCUSDT"]["amt"]) if isinstance(venue.positions.get("BTCUSDT"), dict) \
        else venue.positions.get("BTCUSDT")
    stops = [a.get("clientAlgoId") for a in venue.algo_orders.values()]
    assert hc.broker.positions() and stops, (
        f"venue holds {held} BTC for 6 h, DB books no position, no stop on the venue ({stops}); "
        f"{cid} is {hc.state(cid)}, still tracked={cid in hc.broker._tracked}; events={sorted(set(hc.events()))}")
