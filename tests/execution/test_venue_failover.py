"""The main venue (Binance) and the backup (Bybit) together, through the real python-binance / pybit clients over
HTTP against the two fake venues: a position lives on the venue that holds it, across restarts, an order sent to
one venue is never sent again to the other, and a stop the backup rejects after accepting it is a refused stop."""
from __future__ import annotations

from datetime import timedelta

import pytest

from fakes.binance_futures_venue import FakeBinanceFutures
from fakes.bybit_venue import FakeBybit
from tracer.execution.venue import OrderSpec, VenueOrderType
from tracer.execution.venue_broker import VenueBroker, stop_order_id
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from tracer.execution.venues.bybit import BybitFuturesClient
from tracer.models import OrderState, Side
from tracer.store import row_to_order

from venue_harness import BTC, KEY, LOG, SECRET, T0, Clock, Harness


@pytest.fixture
def venues():
    with FakeBinanceFutures(KEY, SECRET) as bn, FakeBybit(KEY, SECRET) as by:
        yield bn, by


def clients(bn, by):
    return [BinanceFuturesClient(KEY, SECRET, bn.url, timeout_s=0.5), BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5)]


def restarted(h, bn, by) -> VenueBroker:
    """A new broker rebuilt from the DB, as the agent loop does after a restart."""
    b = VenueBroker("futures", clients(bn, by), h.store, LOG, futures=True, backoff_s=0.0, sleep=lambda s: None)
    pending = [(row_to_order(r), None) for r in h.store.orders_in_state("futures", OrderState.SUBMITTED)]
    b.restore(h.store.open_positions("futures"), pending, 0.0, 0.0, {})
    b.last_price[BTC] = 43000.0
    return b


def adopted_on_bybit(h, bn, by):
    bn.down()
    h.settle(T0)                                   # Binance unreachable: the backup is in use
    BybitFuturesClient(KEY, SECRET, by.url).place_order(OrderSpec("manual-1", BTC, Side.BUY, 0.01,
                                                                  VenueOrderType.MARKET))
    h.settle(T0 + timedelta(minutes=1))
    assert "position_adopted" in h.events()
    h.broker.set_brackets({})                      # the fallback stop of an adopted position
    h.settle(T0 + timedelta(minutes=2))
    pos = h.broker.positions()[0]
    sid = stop_order_id(pos.entry_order_id, pos.stop_seq)
    assert h.state(sid) == "submitted" and by.order_by_link(sid)["orderStatus"] == "Untriggered"
    bn.up()
    by.set_price("BTCUSDT", 43000.0)
    return pos, sid


@pytest.mark.parametrize("legacy_row", [False, True], ids=["venue-recorded", "adopt-row-without-venue"])
def test_a_position_adopted_on_the_backup_stays_there_after_a_restart(venues, tmp_path, legacy_row):
    """Before, the adoption's row had no venue, so a restart put the position on the main venue: the next sync
    booked a made-up close there, marked its Bybit stop cancelled while it rested on Bybit, and adopted the
    Bybit position again without a stop. A row written before the fix is placed by its stop's venue."""
    bn, by = venues
    h = Harness(tmp_path, clients(bn, by))
    pos, sid = adopted_on_bybit(h, bn, by)
    assert h.store.order(pos.entry_order_id)["venue"] == "bybit"
    if legacy_row:
        with h.store.transaction():
            h.store.conn.execute("UPDATE orders SET venue=NULL WHERE client_order_id=?", (pos.entry_order_id,))
    b = restarted(h, bn, by)
    assert b._pos_venue[BTC] == "bybit"
    rep = b.sync(T0 + timedelta(hours=1))
    assert rep.trades == [] and "position_adopted" not in [u.reason for u in rep.updates]
    assert not [u for u in rep.updates if u.client_order_id == sid and u.state is OrderState.CANCELED]
    assert by.positions["BTCUSDT"].size == 0.01 and by.order_by_link(sid)["orderStatus"] == "Untriggered"
    assert [p.entry_order_id for p in b.positions()] == [pos.entry_order_id]


def test_an_unclear_entry_on_the_main_venue_is_not_sent_to_the_backup_during_a_ban(venues, tmp_path):
    """The Binance POST is processed but its answer times out, and the lookup meets an IP ban. Before, the next
    cycle asked Bybit (the order's venue was written only after a clear POST), which had never heard of it, and
    sent the same entry there: two positions, the Binance one unknown to the agent and without a stop."""
    bn, by = venues
    clock = Clock(T0)
    h = Harness(tmp_path, clients(bn, by), clock=clock)
    bn.inject("POST /fapi/v1/order", "timeout", when="after", seconds=1.0)
    bn.inject("GET /fapi/v1/order", 418, retry_after=7200)
    o = h.entry()
    assert h.state(o.client_order_id) == "new" and "BTCUSDT" in bn.positions
    assert h.store.order(o.client_order_id)["venue"] == "binance"
    clock.advance(hours=1)
    h.settle(T0 + timedelta(hours=1))                 # the ban goes on: the entry cannot be confirmed
    assert by.post_counts.get(o.client_order_id, 0) == 0 and h.state(o.client_order_id) == "new"
    newer = h.entry(qty=0.01)                         # a newer BTC decision meanwhile goes nowhere either
    assert h.state(newer.client_order_id) == "new" and by.post_counts.get(newer.client_order_id, 0) == 0
    h.broker.venues["binance"].banned_until = None    # the ban is over
    clock.advance(hours=1)
    h.settle(clock.now)
    h.settle(clock.now)
    pos = h.broker.positions()
    assert [(p.entry_order_id, h.broker._pos_venue[p.symbol]) for p in pos] == [(o.client_order_id, "binance")]
    assert any(a["clientAlgoId"] == stop_order_id(o.client_order_id) and a["algoStatus"] == "NEW"
               for a in bn.algo_orders.values())      # protected on the venue that holds it
    assert "BTCUSDT" not in by.positions or by.positions["BTCUSDT"].size == 0


def test_a_second_position_of_a_symbol_on_the_other_venue_is_alerted_once(venues, tmp_path):
    """One position per symbol: one the agent did not open on the other venue (an order sent to both, or opened
    by hand) is neither traded nor adopted over the booked one, and it is said loudly, once. Before, nothing."""
    bn, by = venues
    h = Harness(tmp_path, clients(bn, by))
    bn.down()
    h.entry(qty=0.01)                                  # Binance down: the entry goes to Bybit
    h.settle()
    bn.up()
    h.broker.venues["binance"].down_until = None       # its cool-down over: the main venue is in use again
    assert h.broker._pos_venue[BTC] == "bybit"
    BinanceFuturesClient(KEY, SECRET, bn.url).place_order(OrderSpec("web_manual", BTC, Side.SELL, 0.02,
                                                                    VenueOrderType.MARKET))
    h.settle(T0 + timedelta(hours=1))
    h.settle(T0 + timedelta(hours=2))
    assert h.events().count("position_on_second_venue") == 1
    assert any("position on second venue BTC/USD" in a for a in h.alerts)
    assert [h.broker._pos_venue[p.symbol] for p in h.broker.positions()] == ["bybit"]
    assert "position_adopted" not in h.events()


def test_a_bybit_stop_accepted_then_rejected_is_handled_as_a_refused_stop(venues, tmp_path):
    """Bybit answers an order's ids first and can reject it a moment later (orderStatus Rejected). Before, a
    stop rejected that way was booked as rejected with no alert and no check that the market was already
    through its level."""
    bn, by = venues
    real = by._create

    def create(p):
        out = real(p)
        if p.get("triggerPrice") and out.get("retCode") == 0:
            o = by.orders[out["result"]["orderId"]]
            o["orderStatus"], o["rejectReason"] = "Rejected", "EC_PerCancelRequest"
        return out

    by._create = create
    h = Harness(tmp_path, [BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5)])
    o = h.entry(qty=0.01)
    h.settle()
    sid = stop_order_id(o.client_order_id)
    assert h.state(sid) == "rejected"
    assert "position_unprotected" in h.events() and any("position unprotected" in a for a in h.alerts)
    # the next stop goes out under a new id next cycle (a bounded number of times); meanwhile the agent watches it
    assert h.broker.positions()[0].stop_seq == 1


def test_an_entry_refused_before_processing_on_the_main_venue_goes_to_the_backup(venues, tmp_path):
    """A POST answered 418 never reached the order book: the order's venue is cleared again, so it fails over."""
    bn, by = venues
    h = Harness(tmp_path, clients(bn, by))
    bn.inject("POST /fapi/v1/order", 418, retry_after=7200)
    o = h.entry(qty=0.01)
    assert h.state(o.client_order_id) == "new" and h.store.order(o.client_order_id)["venue"] is None
    h.settle(T0 + timedelta(minutes=1))
    h.settle(T0 + timedelta(minutes=2))
    assert by.post_counts.get(o.client_order_id, 0) == 1 and h.state(o.client_order_id) == "filled"


def test_a_second_position_opened_again_on_the_other_venue_is_alerted_again(venues, tmp_path):
    bn, by = venues
    h = Harness(tmp_path, clients(bn, by))
    bn.down()
    h.entry(qty=0.01)
    h.settle()
    bn.up()
    h.broker.venues["binance"].down_until = None
    manual = BinanceFuturesClient(KEY, SECRET, bn.url)
    manual.place_order(OrderSpec("web_manual1", BTC, Side.SELL, 0.02, VenueOrderType.MARKET))
    h.settle(T0 + timedelta(hours=1))
    manual.place_order(OrderSpec("web_manual2", BTC, Side.BUY, 0.02, VenueOrderType.MARKET, reduce_only=True))
    h.settle(T0 + timedelta(hours=2))                      # closed by hand: nothing held there now
    manual.place_order(OrderSpec("web_manual3", BTC, Side.SELL, 0.05, VenueOrderType.MARKET))
    h.settle(T0 + timedelta(hours=3))
    h.settle(T0 + timedelta(hours=4))
    assert h.events().count("position_on_second_venue") == 2


def test_no_second_entry_while_an_unclear_entry_may_be_on_the_backup(venues, tmp_path):
    """Binance down: the entry goes to Bybit, Bybit processes it, the answer is lost and the lookup misses it (its
    history lags, and a restart emptied its realtime cache: both documented, both in the fake). Binance is back two
    minutes later and the next bar decides BTC again: no second entry goes out while the first may be on Bybit, the
    Bybit position is seen (not left unwatched because entries went back to Binance), and once Bybit shows the
    order it is booked as that entry, on Bybit."""
    bn, by = venues
    clock = Clock(T0)
    h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, bn.url, timeout_s=0.5),
                           BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5)], clock=clock)
    bn.down()
    h.settle(clock.now)
    by.history_lag_s = 3600.0
    real_sweep, hide = by._sweep, {"on": True}

    def sweep():
        real_sweep()
        if hide["on"]:
            by._recent_closed.clear()
    by._sweep = sweep
    by.fail_next("lost")
    a = h.entry(qty=0.01)
    hide["on"] = False
    assert h.state(a.client_order_id) == "new" and h.store.order(a.client_order_id)["venue"] == "bybit"
    assert by.positions["BTCUSDT"].size == 0.01
    bn.up()
    h.broker.venues["binance"].down_until = None
    clock.advance(minutes=2)
    b = h.entry(qty=0.01)
    assert h.state(b.client_order_id) == "rejected" and bn.post_counts.get(b.client_order_id, 0) == 0
    assert "may be on bybit" in h.store.order(b.client_order_id)["state_reason"]
    clock.advance(minutes=2)
    h.settle(clock.now)
    assert "adoption_deferred" in h.events()          # seen on Bybit; its own entry's lookup books it
    by.history_lag_s = 0.0                            # Bybit's history shows the order now
    clock.advance(minutes=2)
    h.settle(clock.now)
    assert [(p.entry_order_id, h.broker._pos_venue[p.symbol], p.qty) for p in h.broker.positions()] == \
        [(a.client_order_id, "bybit", 0.01)]
    assert "BTCUSDT" not in bn.positions and h.state(a.client_order_id) == "filled"
