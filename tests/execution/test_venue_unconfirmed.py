"""Orders the venue does not confirm at once, against the fake Binance USD-M venue through python-binance over HTTP.

Binance's client ids are unique only among *open* orders, a timed-out request ("execution status unknown") can
be processed after a lookup said "Order does not exist", and that answer can lag an order that exists. So: an
entry or a market exit is never POSTed twice in one go, a refusal after an unclear POST is checked against the
venue, a duplicate id means "ours, look it up", and an order the venue does not show is not given up (nor its position adopted as
a second one) before a grace has passed."""
from __future__ import annotations

from datetime import timedelta

import pytest

from fakes.binance_futures_venue import FakeBinanceFutures, _Fault
from tracer.execution.broker import exit_order_id
from tracer.execution.venue_broker import stop_order_id
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from tracer.models import Order, OrderState, PositionSide, Side

from venue_harness import BTC, KEY, SECRET, T0, Clock, Harness, assert_no_duplicates, booked


def venue_qty(venue, sym="BTCUSDT") -> float:
    p = venue.positions.get(sym)
    return float(p["amt"]) if p else 0.0


def algo(venue, cid):
    return next(a for a in venue.algo_orders.values() if a["clientAlgoId"] == cid)


def test_entry_processed_after_the_lookup_is_booked_once_with_a_stop_for_all_of_it(hc, venue):
    venue.inject("POST /fapi/v1/order", "timeout", when="late", seconds=0.6)
    o = hc.entry(qty=0.01)
    cid = o.client_order_id
    assert hc.state(cid) == "new" and venue.post_counts[cid] == 1
    assert "order_unconfirmed" in hc.events()
    venue.process_late()                      # the venue processes it only now: a position of 0.01
    assert venue_qty(venue) == pytest.approx(0.01)
    hc.settle()                               # the same cycle's reconciliation: found, not sent again
    assert venue.post_counts[cid] == 1 and booked(venue)[cid] == 1
    assert hc.state(cid) == "filled"
    pos = hc.broker.positions()[0]
    assert pos.qty == pytest.approx(0.01) == venue_qty(venue) and pos.entry_order_id == cid
    assert float(algo(venue, stop_order_id(cid))["quantity"]) == pytest.approx(0.01)
    assert "position_adopted" not in hc.events()
    assert_no_duplicates(venue)


def test_entry_the_venue_never_saw_is_sent_again_only_after_the_grace(hc, venue, clock):
    venue.inject("POST /fapi/v1/order", "timeout", when="before", seconds=0.6)
    o = hc.entry()
    cid = o.client_order_id
    assert hc.state(cid) == "new" and venue.post_counts[cid] == 1
    hc.settle()                               # the same cycle: still not known, not sent again
    assert hc.state(cid) == "new" and venue.post_counts[cid] == 1
    assert "not sent again before" in hc.store.order(cid)["state_reason"]
    clock.advance(minutes=16)
    hc.settle()                               # the next cycle: the venue still does not know it, so it goes
    assert venue.post_counts[cid] == 2 and booked(venue)[cid] == 1
    assert hc.state(cid) == "filled" and venue_qty(venue) == pytest.approx(0.01)


def test_exit_processed_after_the_lookup_is_booked_at_its_fill_and_never_posted_twice(hc, venue):
    """An exit whose POST times out and that the lookup does not find is not POSTed again under its id (Binance
    would take a second POST as a second order once the first has ended); the next exit id goes out instead."""
    o = hc.entry(qty=0.01)
    hc.settle()
    pos = hc.broker.positions()[0]
    venue.set_price("BTCUSDT", 42500.0)
    # the exit times out; the lookup finds nothing; the venue processes it a moment later
    venue.inject("POST /fapi/v1/order", "timeout", when="late", seconds=0.6, process_after=2)
    ex = Order(exit_order_id(pos.entry_order_id, pos.exit_seq), "futures", BTC, Side.SELL, pos.qty,
               reduce_only=True, purpose="exit", reason="signal", created_at=T0 + timedelta(hours=5))
    hc.send(ex)
    assert venue.post_counts[ex.client_order_id] == 1
    assert hc.state(ex.client_order_id) == "new" and "exit_unconfirmed" in hc.events()
    nxt = exit_order_id(pos.entry_order_id, 1)
    trades = hc.settle()
    assert [(t.exit_reason, t.exit_price, t.exit_order_id) for t in trades] == \
        [("signal", pytest.approx(42500.0), ex.client_order_id)]
    assert trades[0].pnl == pytest.approx(500.0 * 0.01 - trades[0].fees)
    assert hc.state(ex.client_order_id) == "filled" and not hc.broker.positions() and venue_qty(venue) == 0.0
    assert hc.state(nxt) == "rejected" and venue.post_counts[nxt] == 1      # nothing left to reduce
    assert "position_closed_on_venue" not in hc.events()
    assert abs(hc.wallet_diff or 0.0) < 1e-6
    assert o.client_order_id in booked(venue)
    assert_no_duplicates(venue)


def test_stop_found_under_a_duplicate_id_is_tracked_not_counted_as_refused(hc, venue):
    venue.inject("POST /fapi/v1/algoOrder", "timeout", when="late", seconds=0.6, process_after=2)
    o = hc.entry(qty=0.01)
    hc.settle()
    sl = stop_order_id(o.client_order_id)
    assert venue.post_counts[sl] == 2                 # the second POST met the first, processed late: -4116
    assert "duplicate_client_id" in hc.events() and "order_found_after_ambiguous" in hc.events()
    assert hc.state(sl) == "submitted" and algo(venue, sl)["algoStatus"] == "NEW"
    pos = hc.broker.positions()[0]
    assert pos.stop_seq == 0 and "position_unprotected" not in hc.events()
    assert_no_duplicates(venue)


def test_filled_entry_the_venue_briefly_does_not_show_is_kept_then_booked_not_adopted(hc, venue):
    o = hc.entry(qty=0.01)
    venue.inject("GET /fapi/v1/order", -2013)         # "Order does not exist." once, for an order that exists
    hc.settle()
    assert "order_not_visible" in hc.events() and "order_missing" not in hc.events()
    assert "position_adopted" not in hc.events()
    hc.settle()
    assert hc.state(o.client_order_id) == "filled"
    pos = hc.broker.positions()[0]
    assert pos.entry_order_id == o.client_order_id and pos.stop_loss > 0
    assert hc.state(stop_order_id(o.client_order_id)) == "submitted"


def test_an_entry_the_venue_never_shows_is_booked_from_its_position_after_the_grace(hc, venue, clock):
    """Its lookup keeps saying "does not exist" while the venue holds the position it would have opened: not given
    up and adopted with a default stop, but booked from that position under its own id, with its bracket."""
    o = hc.entry(qty=0.01)
    venue.inject("GET /fapi/v1/order", -2013, times=None)
    hc.settle()
    assert hc.state(o.client_order_id) == "submitted" and not hc.broker.positions()
    clock.advance(minutes=16)
    hc.settle()
    assert hc.state(o.client_order_id) == "filled" and "order_missing" not in hc.events()
    pos = hc.broker.positions()[0]            # the venue's truth is kept, and it gets its stop
    assert pos.entry_order_id == o.client_order_id and pos.side is PositionSide.LONG
    assert pos.qty == pytest.approx(0.01) and pos.stop_loss > 0


def test_venue_holding_more_than_the_stop_covers_gets_a_stop_for_all_of_it(hc, venue):
    o = hc.entry(qty=0.01)
    hc.settle()
    with venue._lock:                         # something outside the agent adds to the position
        venue.positions["BTCUSDT"]["amt"] = venue.positions["BTCUSDT"]["amt"] * 2
    hc.settle()
    assert "position_mismatch" in hc.events() and "stop_resized" in hc.events()
    pos = hc.broker.positions()[0]
    assert pos.qty == pytest.approx(0.02) and pos.stop_seq == 1
    old, new = stop_order_id(o.client_order_id, 0), stop_order_id(o.client_order_id, 1)
    assert algo(venue, old)["algoStatus"] == "CANCELED" and hc.state(old) == "canceled"
    assert float(algo(venue, new)["quantity"]) == pytest.approx(0.02) and hc.state(new) == "submitted"


def test_refused_exit_moves_the_position_to_its_next_exit_id(hc, venue):
    hc.entry(qty=0.01)
    hc.settle()
    pos = hc.broker.positions()[0]
    venue.inject("POST /fapi/v1/order", -1111)        # refused once (a precision error, say)
    first = exit_order_id(pos.entry_order_id, pos.exit_seq)
    hc.send(Order(first, "futures", BTC, Side.SELL, pos.qty, reduce_only=True, purpose="exit", reason="signal",
                  created_at=T0 + timedelta(hours=5)))
    assert hc.state(first) == "rejected" and "exit_refused" in hc.events()
    pos = hc.broker.positions()[0]
    assert pos.exit_seq == 1
    second = exit_order_id(pos.entry_order_id, pos.exit_seq)
    assert second != first
    hc.send(Order(second, "futures", BTC, Side.SELL, pos.qty, reduce_only=True, purpose="exit", reason="signal",
                  created_at=T0 + timedelta(hours=6)))
    trades = hc.settle()
    assert [t.exit_order_id for t in trades] == [second] and venue_qty(venue) == 0.0
    assert hc.broker.positions() == [] and OrderState(hc.state(second)) is OrderState.FILLED


def test_adopted_position_keeps_its_old_venue_stop_until_its_own_rests(venue, tmp_path):
    first = Harness(tmp_path / "a", [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)])
    o = first.entry(qty=0.01)
    first.settle()
    old = stop_order_id(o.client_order_id)
    assert algo(venue, old)["algoStatus"] == "NEW"
    # a new process with an empty DB (the old one lost): the venue's position is adopted
    second = Harness(tmp_path / "b", [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)])
    second.settle()
    pos = second.broker.positions()[0]
    assert pos.entry_order_id.startswith("tb-adopt-")
    assert algo(venue, old)["algoStatus"] == "NEW"     # still the only stop on the venue: kept
    second.broker.set_brackets({})                    # the cycle gives it its levels; its stop goes out
    second.settle()
    second.settle()
    mine = stop_order_id(pos.entry_order_id)
    assert algo(venue, mine)["algoStatus"] == "NEW"
    assert algo(venue, old)["algoStatus"] == "CANCELED"
    assert "orphan_cancelled" in second.events()


def test_fill_whose_trades_do_not_show_yet_is_booked_later_with_its_real_fee(hc, venue, clock):
    o = hc.entry(qty=0.01)
    venue.inject("GET /fapi/v1/userTrades", "empty")   # the trade history lags the order's status
    hc.settle()
    q = "SELECT qty, fee FROM fills WHERE client_order_id=?"
    assert hc.store.conn.execute(q, (o.client_order_id,)).fetchall() == []    # not booked with a fee of 0
    hc.settle()                                        # the next cycle: the trades show, with their fee
    fills = hc.store.conn.execute(q, (o.client_order_id,)).fetchall()
    assert [(f["qty"], f["fee"]) for f in fills] == [(pytest.approx(0.01), pytest.approx(0.01 * 42000 * 0.0004))]
    assert "fills_incomplete" not in hc.events()
    o2 = hc.entry(qty=0.01, symbol="ETH/USD")
    hc.broker.last_price["ETH/USD"] = 2500.0
    venue.inject("GET /fapi/v1/userTrades", "empty", times=None)
    hc.settle()
    assert hc.state(o2.client_order_id) == "submitted"   # not booked with a fee of 0
    clock.advance(minutes=16)
    hc.settle()
    assert hc.state(o2.client_order_id) == "filled" and "fills_incomplete" in hc.events()


def test_position_closed_by_hand_on_the_venue_is_not_booked_as_a_liquidation(hc, venue):
    from tracer.execution.venue import OrderSpec
    hc.entry(qty=0.01)
    hc.settle()
    pos = hc.broker.positions()[0]
    venue.set_price("BTCUSDT", 42300.0)
    hc.broker.last_price[BTC] = 42300.0
    # the user closes it in the venue's app: an order the agent never sent
    BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5).place_order(
        OrderSpec("web_manual_close_1", BTC, Side.SELL, 0.01, reduce_only=True))
    trades = hc.settle()
    assert [t.exit_reason for t in trades] == ["closed_on_venue"]
    commission = 0.01 * 42300.0 * venue.taker_fee                   # the venue's, from its trades (userTrades)
    assert trades[0].pnl == pytest.approx(300.0 * 0.01 - pos.entry_fee - commission, abs=1e-6)   # not minus the margin
    assert trades[0].pnl > -pos.margin / 2


def test_an_account_in_hedge_mode_gets_no_entry_and_says_why(hc, venue):
    venue.hedge_mode = True
    o = hc.entry(qty=0.01)
    assert hc.state(o.client_order_id) == "rejected"
    assert "hedge mode" in hc.store.order(o.client_order_id)["state_reason"]
    assert o.client_order_id not in venue.post_counts and not venue.positions
    assert any("hedge mode" in a for a in hc.alerts)


def test_a_bybit_account_in_hedge_mode_gets_no_entry_and_alerts(hb, by):
    """Bybit refuses our one-way orders (positionIdx 0) in hedge mode with a generic 10001: said and alerted."""
    by.hedge_mode = True
    o = hb.entry(qty=0.01)
    assert hb.state(o.client_order_id) == "rejected"
    assert "hedge mode" in hb.store.order(o.client_order_id)["state_reason"] and not by.orders
    assert any("hedge mode" in a and "One-Way Mode" in a for a in hb.alerts), hb.alerts


def test_stops_resized_for_a_larger_position_use_no_stop_attempt(hc, venue):
    """Each stop cancelled to cover a larger position is replaced: three resizes do not use up the three stop
    attempts (before, the third left the position with no venue stop), in this process or after a restart."""
    o = hc.entry(qty=0.01)
    hc.settle()
    for k in range(1, 4):
        with venue._lock:
            venue.positions["BTCUSDT"]["amt"] = venue.positions["BTCUSDT"]["amt"] * 2
        hc.settle()
        pos = hc.broker.positions()[0]
        assert pos.stop_seq == k and pos.qty == pytest.approx(0.01 * 2 ** k)
        sid = stop_order_id(o.client_order_id, k)
        assert hc.state(sid) == "submitted" and float(algo(venue, sid)["quantity"]) == pytest.approx(pos.qty)
    assert "position_unprotected" not in hc.events()
    # a restart reads the resizes from the DB: a fourth growth still gets its stop
    from venue_harness import LOG
    from tracer.execution.venue_broker import VenueBroker
    from tracer.store import row_to_order
    b2 = VenueBroker("futures", [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], hc.store, LOG,
                     futures=True, backoff_s=0.0, sleep=lambda s: None)
    pending = [(row_to_order(r), None) for r in hc.store.orders_in_state("futures", OrderState.SUBMITTED)]
    b2.restore(hc.store.open_positions("futures"), pending, 0.0, 0.0, {})
    b2.last_price[BTC] = 42000.0
    hc.broker = b2
    with venue._lock:
        venue.positions["BTCUSDT"]["amt"] = venue.positions["BTCUSDT"]["amt"] * 2
    hc.settle()
    sid = stop_order_id(o.client_order_id, 4)
    assert hc.state(sid) == "submitted" and float(algo(venue, sid)["quantity"]) == pytest.approx(0.16)
    assert "position_unprotected" not in hc.events()


class ThinBook(FakeBinanceFutures):
    """The fake, where a market order processed late meets a thin book: half fills and the rest expires (what
    its own "partial" fault does to an order answered at once)."""
    thin_for: set = set()

    def _new_order(self, params, fault):
        cid = params.get("newClientOrderId")
        if cid in self.thin_for and fault is None:
            self.thin_for.discard(cid)
            fault = _Fault("POST /fapi/v1/order", "partial", 1, {"fraction": 0.5})
        return super()._new_order(params, fault)


def test_exit_processed_late_in_part_is_booked_at_its_fill_and_the_rest_leaves_under_the_next_id(tmp_path):
    """A market exit processed late can meet a thin book: half fills and the rest expires. Before, the same id
    was POSTed again and Binance (ids unique only among open orders) took it as a second order: the venue held
    two orders under one id, one was never booked, and its half was booked as closed on the venue at a later
    price with no fee."""
    with ThinBook(KEY, SECRET) as venue:
        h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], clock=Clock())
        h.entry(qty=0.02)
        h.settle()
        pos = h.broker.positions()[0]
        venue.set_price("BTCUSDT", 42500.0)
        h.broker.last_price[BTC] = 42500.0
        ex = Order(exit_order_id(pos.entry_order_id, pos.exit_seq), "futures", BTC, Side.SELL, pos.qty,
                   reduce_only=True, purpose="exit", reason="signal", created_at=T0 + timedelta(hours=5))
        venue.thin_for = {ex.client_order_id}
        venue.inject("POST /fapi/v1/order", "timeout", when="late", seconds=0.6, process_after=2)
        h.send(ex)
        trades = h.settle(T0 + timedelta(hours=5))
        venue.set_price("BTCUSDT", 41200.0)            # the market moves on
        h.broker.last_price[BTC] = 41200.0
        trades += h.settle(T0 + timedelta(hours=6))
        assert all(n == 1 for n in venue.post_counts.values())
        assert_no_duplicates(venue)
        assert sorted((t.exit_order_id, t.qty) for t in trades) == \
            [(ex.client_order_id, pytest.approx(0.01)), (exit_order_id(pos.entry_order_id, 1), pytest.approx(0.01))]
        assert [t.exit_price for t in trades] == [pytest.approx(42500.0)] * 2
        assert not h.broker.positions() and "BTCUSDT" not in venue.positions or venue_qty(venue) == 0.0
        assert abs(h.wallet_diff or 0.0) < 0.01


def test_an_unclear_exit_processed_after_the_same_cycles_lookup_is_booked_at_its_fill(venue, tmp_path):
    """The cycle's reconciliation asks for an unclear exit milliseconds after its POST and does not find it yet:
    it stays asked for (the grace), so the venue's late processing of it is booked under its id at its price."""
    h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], clock=Clock())
    h.entry(qty=0.01)
    h.settle()
    pos = h.broker.positions()[0]
    venue.set_price("BTCUSDT", 42500.0)
    venue.inject("POST /fapi/v1/order", "timeout", when="late", seconds=0.6)
    ex = Order(exit_order_id(pos.entry_order_id, pos.exit_seq), "futures", BTC, Side.SELL, pos.qty,
               reduce_only=True, purpose="exit", reason="signal", created_at=T0 + timedelta(hours=5))
    h.send(ex)
    h.reconcile()                                 # the same cycle: not found yet, not cancelled
    assert h.state(ex.client_order_id) == "new"
    venue.process_late()
    trades = h.settle(T0 + timedelta(hours=5)) + h.settle(T0 + timedelta(hours=6))
    assert [(t.exit_order_id, t.exit_price) for t in trades] == [(ex.client_order_id, pytest.approx(42500.0))]
    assert h.state(ex.client_order_id) == "filled" and not h.broker.positions()
    assert "position_closed_on_venue" not in h.events() and abs(h.wallet_diff or 0.0) < 0.01


def test_an_unclear_exit_is_not_posted_again_under_its_id_after_a_restart(tmp_path):
    """The position's move to its next exit id lives in memory until the cycle writes its book; a restart before
    that restores the old exit id as current. The unclear exit's own row says not to POST it again."""
    from tracer.store import row_to_order

    with ThinBook(KEY, SECRET) as venue:
        h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], clock=Clock())
        h.entry(qty=0.02)
        h.settle()
        pos = h.broker.positions()[0]
        venue.set_price("BTCUSDT", 42500.0)
        ex = Order(exit_order_id(pos.entry_order_id, pos.exit_seq), "futures", BTC, Side.SELL, pos.qty,
                   reduce_only=True, purpose="exit", reason="signal", created_at=T0 + timedelta(hours=5))
        venue.thin_for = {ex.client_order_id}
        venue.inject("POST /fapi/v1/order", "timeout", when="late", seconds=0.6)
        h.send(ex)
        venue.process_late()                        # half fills, the rest expires
        h2 = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], clock=Clock())
        pending = [(row_to_order(r), None) for r in h2.store.orders_in_state("futures", OrderState.SUBMITTED)]
        h2.broker.restore(h2.store.open_positions("futures"), pending, 0.0, 0.0, {})
        h2.broker.last_price[BTC] = 42500.0
        assert h2.broker.positions()[0].exit_seq == 0         # what the DB had
        venue.inject("GET /fapi/v1/order", -2013)             # the lookup lags once
        trades = h2.settle(T0 + timedelta(hours=5)) + h2.settle(T0 + timedelta(hours=6))
        assert venue.post_counts[ex.client_order_id] == 1 and booked(venue)[ex.client_order_id] == 1
        assert sum(t.qty for t in trades) == pytest.approx(0.02) and not h2.broker.positions()
        assert all(t.exit_price == pytest.approx(42500.0) for t in trades)


# --- an unclear POST whose lookup fails too (a 5xx on the POST comes with failing GETs: the venue overloaded) ---
# Binance, "HTTP Return Codes": a 5XX "is NOT a failure operation; the execution status is UNKNOWN and could
# have been a success"; -1007 TIMEOUT: "Send status unknown; execution status unknown". The grace must start
# then too, not only when the lookup answers "does not exist".

def test_unclear_entry_whose_lookup_failed_is_not_posted_again_within_the_grace(hc, venue):
    venue.inject("POST /fapi/v1/order", "timeout", when="late", seconds=0.6)   # processed only later
    venue.inject("GET /fapi/v1/order", "5xx", times=3)                          # every try of its lookup fails
    o = hc.entry(qty=0.01)
    cid = o.client_order_id
    assert hc.state(cid) == "new" and hc.store.order(cid)["state_reason"].startswith("unconfirmed")
    assert "order_unconfirmed" in hc.events()
    hc.settle()                  # the same cycle's reconciliation: "not found yet" is no proof
    venue.process_late()         # the first POST is executed now
    assert venue.post_counts[cid] == 1 and booked(venue)[cid] == 1
    assert venue_qty(venue) == pytest.approx(0.01)
    hc.settle()                  # the next cycle finds it: booked once, with its stop
    assert hc.state(cid) == "filled"
    assert [p.qty for p in hc.broker.positions()] == [pytest.approx(0.01)]
    assert_no_duplicates(venue)


def test_unclear_exit_whose_lookup_failed_and_that_filled_is_booked_at_its_own_fill(hc, venue):
    hc.entry(qty=0.01)
    hc.settle()
    pos = hc.broker.positions()[0]
    venue.set_price("BTCUSDT", 43000.0)          # the venue's price when the exit executes
    hc.broker.last_price[BTC] = 42500.0           # the agent's last bar close
    venue.inject("POST /fapi/v1/order", "timeout", when="late", seconds=0.6)
    venue.inject("GET /fapi/v1/order", "5xx", times=3)
    x0 = exit_order_id(pos.entry_order_id, 0)
    hc.send(Order(x0, "futures", BTC, Side.SELL, pos.qty, reduce_only=True, purpose="exit", reason="signal",
                  created_at=T0 + timedelta(hours=5)))
    assert hc.store.order(x0)["state_reason"].startswith("unconfirmed")
    hc.reconcile()               # the cycle's reconciliation; then the venue executes the first POST
    venue.process_late()
    assert venue_qty(venue) == 0
    hc.settle(T0 + timedelta(hours=5))
    row = hc.store.conn.execute("SELECT exit_price, exit_reason, exit_order_id FROM trades").fetchone()
    # booked at its own fill, not as closed outside the agent at the last bar's price without a fee
    assert (row["exit_order_id"], row["exit_reason"], row["exit_price"]) == (x0, "signal", pytest.approx(43000.0))
    assert hc.store.order(x0)["state"] == "filled"
    assert "closed_on_venue" not in hc.events()


def test_an_entry_whose_post_a_crash_cut_short_is_not_posted_again_within_the_grace(tmp_path, venue):
    """kill -9 while the entry's POST is on its way: no outcome is written (the order is ``new``, its venue set, no
    reason), and the venue processes the request later. The restarted agent's reconciliation must not POST it again
    under the same id at once (Binance takes a filled order's id again: a second position); it asks for it until
    the grace has passed, and books the one the venue made."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    venue.inject("POST /fapi/v1/order", "timeout", when="late", seconds=3.0)
    child = subprocess.Popen([sys.executable, "-c", f"""
import sys
sys.path[:0] = [{str(root)!r}, {str(root / 'tests')!r}]
from pathlib import Path
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from venue_harness import KEY, SECRET, Clock, Harness, T0
h = Harness(Path({str(tmp_path)!r}), [BinanceFuturesClient(KEY, SECRET, {venue.url!r}, timeout_s=30)], clock=Clock(T0))
h.entry(qty=0.01)
"""])
    try:
        deadline = time.monotonic() + 30
        while not venue.post_counts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert venue.post_counts, "the child never POSTed"
        os.kill(child.pid, signal.SIGKILL)              # mid-POST: the venue holds the request
    finally:
        child.wait(timeout=30)
    (cid,) = venue.post_counts
    time.sleep(3.2)                                     # the venue's hold ends; it processes the request later
    h2 = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], clock=Clock(T0))
    row = h2.store.order(cid)
    assert (row["state"], row["state_reason"], row["venue"]) == ("new", None, "binance")
    h2.reconcile()                                      # the restart: "not found" yet is no proof
    assert venue.post_counts[cid] == 1 and h2.state(cid) == "new"
    venue.process_late()
    h2.settle()
    assert venue.post_counts[cid] == 1 and booked(venue)[cid] == 1 and h2.state(cid) == "filled"
    assert [p.qty for p in h2.broker.positions()] == [pytest.approx(0.01)]
    assert_no_duplicates(venue)
