"""What the venue closes itself (a liquidation, auto-deleveraging) or the user closes by hand, booked as what it
was, through the real python-binance / pybit clients over HTTP against the fake venues.

A vanished or shrunken position is asked about on the venue: Binance lists its own closes in "User's Force
Orders" (``autoclose-`` liquidations, ``adl_autoclose`` auto-deleveraging), Bybit marks them in the execution
list (``execType`` BustTrade, AdlTrade). A liquidation loses the margin; an auto-deleveraging closes in profit at
a counterparty's bankruptcy price; a close by hand is booked at the last price. A part closed is booked as a
trade of its own, once, and the money reconciles with the venue's wallet."""
from __future__ import annotations

from datetime import timedelta

import pytest

from fakes.bybit_venue import FakeBybit
from tracer.execution.broker import Bracket
from tracer.execution.venue import OrderSpec
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from tracer.execution.venues.bybit import BybitFuturesClient
from tracer.models import Side

from venue_harness import BTC, KEY, SECRET, T0, Harness


@pytest.fixture
def by():
    with FakeBybit(KEY, SECRET) as fake:
        yield fake


@pytest.fixture
def hb(by, tmp_path):
    return Harness(tmp_path, [BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5)])


def open_long(h, qty=0.02, stop=1000.0):
    h.entry(qty=qty, bracket=Bracket(stop_distance=stop, take_profit_distance=2 * stop, trail_pct=0.0, max_hold_s=0.0))
    h.settle()
    h.settle(T0 + timedelta(minutes=5))           # the wallet's comparison anchors with nothing in flight
    return h.broker.positions()[0]


def test_bybit_liquidation_is_booked_as_one_at_its_price(hb, by):
    pos = open_long(hb, 0.01, stop=15000.0)          # a stop beyond the liquidation price
    by.set_price("BTCUSDT", pos.liquidation_price * 0.98)
    trades = hb.settle(T0 + timedelta(hours=1))
    assert [t.exit_reason for t in trades] == ["liquidation"]
    assert trades[0].exit_price == pytest.approx(pos.liquidation_price, rel=1e-3)
    assert trades[0].pnl == pytest.approx(-pos.margin - pos.entry_fee, rel=1e-3)
    assert hb.broker.positions() == []


def test_bybit_position_closed_by_hand_is_not_booked_as_a_liquidation(hb, by):
    """Before, a vanished Bybit position was always booked as a liquidation: the whole margin lost."""
    pos = open_long(hb, 0.01)
    by.set_price("BTCUSDT", 42300.0)
    hb.broker.last_price[BTC] = 42300.0
    BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5).place_order(
        OrderSpec("web-manual-close", BTC, Side.SELL, 0.01, reduce_only=True))
    trades = hb.settle(T0 + timedelta(hours=1))
    assert [t.exit_reason for t in trades] == ["closed_on_venue"]
    assert trades[0].exit_price == pytest.approx(42300.0)
    assert trades[0].pnl > 0 > -pos.margin


def test_bybit_auto_deleveraging_of_part_is_booked_once_and_the_rest_stays_protected(hb, by):
    """Before, the missing part took the venue's figure with no trade: its profit never reached the books."""
    pos = open_long(hb, 0.02)
    by.set_price("BTCUSDT", 43500.0)
    by.adl("BTCUSDT", 0.008, 43600.0)              # cancels our stop and target, as Bybit's ADL does
    trades = hb.settle(T0 + timedelta(hours=1))
    assert [(t.exit_reason, t.qty) for t in trades] == [("adl", pytest.approx(0.008))]
    maker = 0.008 * 43600.0 * 0.0002
    assert trades[0].pnl == pytest.approx((43600.0 - pos.entry_price) * 0.008 - pos.entry_fee * 0.4 - maker,
                                          rel=1e-6)
    rest = hb.broker.positions()[0]
    assert rest.qty == pytest.approx(0.012) and rest.qty == pytest.approx(by.positions["BTCUSDT"].size)
    # the stop the ADL cancelled is replaced, for what is left
    live = [o for o in by.orders.values() if o["orderStatus"] == "Untriggered" and o["orderLinkId"]]
    assert len(live) >= 1 and all(float(o["qty"]) == pytest.approx(0.012) for o in live
                                  if o["triggerDirection"] == 2)
    assert "position_reduced_on_venue" in hb.events()
    assert hb.settle(T0 + timedelta(hours=2)) == []              # booked once
    assert hb.wallet_diff == pytest.approx(0.0, abs=1e-6)       # the books match the venue's wallet
    # the rest closed by hand later is not taken for the earlier auto-deleveraging
    hb.broker.last_price[BTC] = 43500.0
    BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5).place_order(
        OrderSpec("web-manual-close", BTC, Side.SELL, 0.012, reduce_only=True))
    trades = hb.settle(T0 + timedelta(hours=3))
    assert [(t.exit_reason, t.qty) for t in trades] == [("closed_on_venue", pytest.approx(0.012))]


def test_binance_auto_deleveraging_of_all_is_a_profit_not_a_lost_margin(h, venue):
    pos = open_long(h, 0.01)
    venue.set_price("BTCUSDT", 43500.0)
    venue.adl("BTCUSDT", 0.01, 43600.0)
    trades = h.settle(T0 + timedelta(hours=1))
    assert [t.exit_reason for t in trades] == ["adl"]
    assert trades[0].exit_price == pytest.approx(43600.0)
    assert trades[0].pnl == pytest.approx((43600.0 - pos.entry_price) * 0.01 - pos.entry_fee, rel=1e-6)
    assert h.wallet_diff == pytest.approx(0.0, abs=1e-6)


def test_binance_part_closed_by_hand_is_booked_as_a_trade_of_its_own(h, venue):
    pos = open_long(h, 0.02)
    venue.set_price("BTCUSDT", 42500.0)
    h.broker.last_price[BTC] = 42500.0
    BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5).place_order(
        OrderSpec("web_manual_part", BTC, Side.SELL, 0.005, reduce_only=True))
    trades = h.settle(T0 + timedelta(hours=1))
    assert [(t.exit_reason, t.qty) for t in trades] == [("closed_on_venue", pytest.approx(0.005))]
    assert trades[0].pnl == pytest.approx((42500.0 - pos.entry_price) * 0.005 - pos.entry_fee / 4, rel=1e-6)
    rest = h.broker.positions()[0]
    assert rest.qty == pytest.approx(0.015) and rest.entry_fee == pytest.approx(pos.entry_fee * 0.75)
    assert h.settle(T0 + timedelta(hours=2)) == []


def test_a_shrunken_position_waits_while_an_exit_of_ours_cannot_be_read(h, venue):
    """The venue holds less and our stop's lookup fails: it may be that stop, part-filled, so nothing is booked
    as closed on the venue now; the next cycle books it once."""
    open_long(h, 0.02)
    h.broker.last_price[BTC] = 42000.0
    BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5).place_order(
        OrderSpec("web_manual_part", BTC, Side.SELL, 0.005, reduce_only=True))
    venue.inject("GET /fapi/v1/algoOrder", "5xx", times=None)
    assert h.broker.sync(T0 + timedelta(hours=1)).trades == []
    assert "position_reduced_on_venue" not in h.events()
    venue.faults.clear()
    trades = h.settle(T0 + timedelta(hours=2))
    assert [(t.exit_reason, t.qty) for t in trades] == [("closed_on_venue", pytest.approx(0.005))]


def test_a_venue_that_cannot_say_what_closed_a_position_is_judged_by_the_price_after_the_grace(venue, tmp_path):
    """Before, a failing force-order lookup left a vanished position on the books forever."""
    from venue_harness import Clock
    clock = Clock()
    h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], clock=clock)
    open_long(h, 0.01)
    venue.set_price("BTCUSDT", 42300.0)
    h.broker.last_price[BTC] = 42300.0
    BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5).place_order(
        OrderSpec("web_manual_close_1", BTC, Side.SELL, 0.01, reduce_only=True))
    venue.inject("GET /fapi/v1/forceOrders", -1000, times=None)
    assert h.settle(T0 + timedelta(hours=1)) == []           # not guessed at once
    assert "forced_closes_unreadable" in h.events() and len(h.broker.positions()) == 1
    clock.advance(minutes=16)
    trades = h.settle(T0 + timedelta(hours=2))
    assert [(t.exit_reason, t.exit_price) for t in trades] == [("closed_on_venue", pytest.approx(42300.0))]
    assert any("forced closes unreadable" in a for a in h.alerts)
