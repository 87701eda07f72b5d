"""What the venue closes itself (a liquidation, auto-deleveraging, a delisting) or the user closes by hand, booked
as what it was, through the real python-binance / pybit clients over HTTP against the fake venues.

A vanished or shrunken position is asked about on the venue: Binance lists its own closes in "User's Force
Orders" (``autoclose-`` liquidations, ``adl_autoclose`` auto-deleveraging), Bybit marks them in the execution
list (``execType`` BustTrade, AdlTrade, Delivery). A liquidation loses the margin; an auto-deleveraging closes in
profit at a counterparty's bankruptcy price; a delisting settles at its price and fee; a close by hand is booked
at the price and fee of the venue's trades. A part closed is booked as a trade of its own, once, and the money
reconciles with the venue's wallet."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tracer.execution.broker import Bracket, exit_order_id
from tracer.execution.venue import OrderSpec
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from tracer.execution.venues.bybit import BybitFuturesClient
from tracer.models import Order, OrderType, Side

from venue_harness import BTC, KEY, SECRET, T0, Clock, Harness


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
    fee = 0.01 * pos.liquidation_price * 0.00055          # Bybit takes the margin and the fee to close
    assert trades[0].fees == pytest.approx(pos.entry_fee + fee, rel=1e-3)
    assert trades[0].pnl == pytest.approx(-pos.margin - pos.entry_fee - fee, rel=1e-3)
    assert hb.broker.positions() == [] and hb.wallet_diff == pytest.approx(0.0, abs=1e-6)


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


def test_bybit_delisting_is_booked_as_a_settlement_at_its_price_and_fee(hb, by):
    """A delisted contract's position is closed by Bybit itself (execType Delivery): a settlement at the delivery
    price with its fee, not a close by hand at the agent's last price with fee 0."""
    pos = open_long(hb, 0.01)
    by.deliver("BTCUSDT", 41500.0)                     # cancels our stop and target, as a delisting does
    trades = hb.settle(T0 + timedelta(hours=1))
    assert [(t.exit_reason, t.exit_price) for t in trades] == [("settlement", 41500.0)]
    fee = 0.01 * 41500.0 * 0.00055
    assert trades[0].fees == pytest.approx(pos.entry_fee + fee)
    assert trades[0].pnl == pytest.approx((41500.0 - pos.entry_price) * 0.01 - pos.entry_fee - fee, rel=1e-6)
    assert hb.broker.positions() == [] and hb.wallet_diff == pytest.approx(0.0, abs=1e-6)


def test_binance_auto_deleveraging_of_all_is_a_profit_not_a_lost_margin(h, venue):
    pos = open_long(h, 0.01)
    venue.set_price("BTCUSDT", 43500.0)
    venue.adl("BTCUSDT", 0.01, 43600.0)
    trades = h.settle(T0 + timedelta(hours=1))
    assert [t.exit_reason for t in trades] == ["adl"]
    assert trades[0].exit_price == pytest.approx(43600.0)
    assert trades[0].pnl == pytest.approx((43600.0 - pos.entry_price) * 0.01 - pos.entry_fee, rel=1e-6)
    assert h.wallet_diff == pytest.approx(0.0, abs=1e-6)


def test_binance_part_closed_by_hand_is_booked_as_a_trade_of_its_own_after_the_grace(venue, tmp_path):
    """No order of ours and no forced close explains it: booked once the grace has passed (an order of ours that
    did it would have shown its fill by then), at the price and commission of the venue's own trades."""
    clock = Clock()
    h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], clock=clock)
    pos = open_long(h, 0.02)
    venue.set_price("BTCUSDT", 42500.0)
    h.broker.last_price[BTC] = 42500.0
    BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5).place_order(
        OrderSpec("web_manual_part", BTC, Side.SELL, 0.005, reduce_only=True))
    assert h.settle(T0 + timedelta(hours=1)) == []
    assert "position_reduced_unexplained" in h.events()
    clock.advance(minutes=16)
    trades = h.settle(T0 + timedelta(hours=2))
    assert [(t.exit_reason, t.qty) for t in trades] == [("closed_on_venue", pytest.approx(0.005))]
    commission = 0.005 * 42500.0 * venue.taker_fee      # the venue's, from its trades (userTrades)
    assert trades[0].pnl == pytest.approx((42500.0 - pos.entry_price) * 0.005 - pos.entry_fee / 4 - commission,
                                          rel=1e-6)
    rest = h.broker.positions()[0]
    assert rest.qty == pytest.approx(0.015) and rest.entry_fee == pytest.approx(pos.entry_fee * 0.75)
    assert h.settle(T0 + timedelta(hours=3)) == []
    assert h.wallet_diff == pytest.approx(0.0, abs=1e-6)


def test_a_shrunken_position_waits_while_an_exit_of_ours_cannot_be_read(venue, tmp_path):
    """The venue holds less and our stop's lookup fails: it may be that stop, part-filled, so nothing is booked
    as closed on the venue, even after the grace; once it can be read, booked once."""
    clock = Clock()
    h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], clock=clock)
    open_long(h, 0.02)
    h.broker.last_price[BTC] = 42000.0
    BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5).place_order(
        OrderSpec("web_manual_part", BTC, Side.SELL, 0.005, reduce_only=True))
    venue.inject("GET /fapi/v1/algoOrder", "5xx", times=None)
    clock.advance(minutes=16)
    assert h.broker.sync(T0 + timedelta(hours=1)).trades == []
    clock.advance(minutes=16)
    assert h.broker.sync(T0 + timedelta(hours=2)).trades == []
    assert "position_reduced_on_venue" not in h.events()
    venue.faults.clear()
    h.settle(T0 + timedelta(hours=3))
    clock.advance(minutes=16)
    trades = h.settle(T0 + timedelta(hours=4))
    assert [(t.exit_reason, t.qty) for t in trades] == [("closed_on_venue", pytest.approx(0.005))]


def test_a_venue_that_cannot_say_what_closed_a_position_is_judged_by_the_price_after_the_grace(venue, tmp_path):
    """Before, a failing force-order lookup left a vanished position on the books forever."""
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


# --- found in review: an order of ours that reduced the position is booked once, by that order -------------
def test_an_unconfirmed_exit_that_filled_in_part_is_booked_once(h, venue):
    """An exit left ``new`` after an unclear POST (untracked) fills half on the venue: the smaller position is
    not booked as closed on the venue; the exit's own lookup books its half, and the rest exits."""
    pos = open_long(h, 0.02)
    venue.set_price("BTCUSDT", 42500.0)
    h.broker.last_price[BTC] = 42500.0
    cid = exit_order_id(pos.entry_order_id, pos.exit_seq)
    venue.inject("POST /fapi/v1/order", "drop")
    venue.inject("GET /fapi/v1/order", "5xx", times=None)
    h.send(Order(cid, h.broker.agent, BTC, Side.SELL, pos.qty, OrderType.MARKET, reduce_only=True,
                 leverage=pos.leverage, purpose="exit", reason="signal_exit", created_at=T0 + timedelta(hours=1)))
    assert h.state(cid) == "new"
    venue.inject("POST /fapi/v1/order", "partial", fraction=0.5)     # processed after all: half filled
    BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5).place_order(
        OrderSpec(cid, BTC, Side.SELL, 0.02, reduce_only=True))
    trades = h.settle(T0 + timedelta(hours=1))
    venue.faults.clear()
    trades += h.settle(T0 + timedelta(hours=2)) + h.settle(T0 + timedelta(hours=3))
    assert "position_reduced_on_venue" not in h.events()
    assert [t.exit_reason for t in trades] == ["signal_exit", "signal_exit"]
    assert sum(t.qty for t in trades) == pytest.approx(0.02) and "BTCUSDT" not in venue.positions
    assert h.broker.positions() == [] and h.wallet_diff == pytest.approx(0.0, abs=1e-6)


def test_a_stop_filling_in_part_during_the_sync_is_booked_once(h, venue):
    """Our stop triggers and fills half between this cycle's lookup of it and the positions read: booked by the
    stop's own lookup, not also as closed on the venue."""
    pos = open_long(h, 0.02)
    client = h.broker.venues[h.broker.order_of_venues[0]].client
    real, armed = client.positions, [True]

    def positions():
        if armed and armed.pop():
            venue.inject("trigger", "partial", fraction=0.5)
            venue.set_price("BTCUSDT", pos.stop_loss - 10)
        return real()

    client.positions = positions
    h.broker.last_price[BTC] = 41500.0
    trades = sum((h.settle(T0 + timedelta(hours=k)) for k in (1, 2, 3)), [])
    assert "position_reduced_on_venue" not in h.events()
    assert [t.exit_reason for t in trades] == ["stop_loss", "stop_loss"]
    assert sum(t.qty for t in trades) == pytest.approx(0.02) and h.wallet_diff == pytest.approx(0.0, abs=1e-6)


def test_the_rest_of_an_exit_is_still_sent_when_the_venue_deleverages_in_the_same_cycle(h, venue):
    """A part-filled exit queues its rest under the next exit id; an auto-deleveraging seen in the same cycle is
    booked under an id of its own, and the queued rest still goes out."""
    pos = open_long(h, 0.02)
    venue.set_price("BTCUSDT", 43500.0)
    h.broker.last_price[BTC] = 43500.0
    venue.inject("POST /fapi/v1/order", "partial", fraction=0.5)
    h.send(Order(exit_order_id(pos.entry_order_id, 0), h.broker.agent, BTC, Side.SELL, pos.qty, OrderType.MARKET,
                 reduce_only=True, leverage=pos.leverage, purpose="exit", reason="signal_exit",
                 created_at=T0 + timedelta(hours=1)))
    venue.adl("BTCUSDT", 0.004, 43600.0)
    trades = h.settle(T0 + timedelta(hours=1)) + h.settle(T0 + timedelta(hours=2))
    assert sorted((t.exit_reason, round(t.qty, 6)) for t in trades) == [
        ("adl", 0.004), ("signal_exit", 0.006), ("signal_exit", 0.01)]
    assert venue.post_counts[exit_order_id(pos.entry_order_id, 1)] == 1 and "BTCUSDT" not in venue.positions
    assert h.wallet_diff == pytest.approx(0.0, abs=1e-6)


def test_a_liquidation_booked_in_a_cycle_that_never_committed_is_booked_again_after_a_restart(h, venue, tmp_path):
    """The forced close's venue id is kept with the exit row, written with the trade: a cycle lost before its
    commit leaves it unbooked, so the restarted broker books the liquidation, not a close by hand."""
    from tracer.models import OrderState
    from tracer.store import row_to_order
    pos = open_long(h, 0.01, stop=15000.0)
    venue.set_price("BTCUSDT", pos.liquidation_price * 0.98)
    assert [t.exit_reason for t in h.broker.sync(T0 + timedelta(hours=1)).trades] == ["liquidation"]
    venue.set_price("BTCUSDT", 42000.0)             # that cycle is lost (crash); the market moves back
    h2 = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)])
    pending = [(row_to_order(r), None) for r in h2.store.orders_in_state("futures", OrderState.SUBMITTED)]
    h2.broker.restore(h2.store.open_positions("futures"), pending, 0.0, 0.0, {BTC: 42000.0})
    trades = h2.settle(T0 + timedelta(hours=2))
    assert [t.exit_reason for t in trades] == ["liquidation"]
    assert trades[0].pnl == pytest.approx(-pos.margin - pos.entry_fee, rel=1e-3)
    assert h2.settle(T0 + timedelta(hours=3)) == []


def test_spot_fee_taken_in_the_coin_is_a_quantity_correction_not_a_trade(tmp_path):
    """Alpaca takes a buy's fee in the coin: when the venue's position could not be read as the entry was
    booked, the next cycle sees less by that fee, which is already booked (in USD) as the entry fee."""
    import logging
    from fakes.alpaca_trading import FakeAlpacaTrading
    from tracer.execution.venue_broker import VenueBroker
    from tracer.execution.venues.alpaca import AlpacaSpotClient
    keys = ("PKTESTKEYID0001", "s3cr3t-value-never-shown")
    with FakeAlpacaTrading(keys=keys, cash=10_000.0) as al:
        al.set_price(BTC, 42000.0)
        client = AlpacaSpotClient(*keys, al.url, timeout_s=2)
        h = Harness(tmp_path, [client])
        h.broker = VenueBroker("futures", [client], h.store, logging.getLogger("t"), futures=False,
                               backoff_s=0.0, sleep=h.slept.append, alert=h.alerts.append)
        h.broker.last_price[BTC] = 42000.0
        h.entry(qty=0.1)
        al.inject("GET /v2/positions", "503", times=3)
        trades = h.settle() + h.settle(T0 + timedelta(hours=1))
        assert trades == [] and "position_reduced_on_venue" not in h.events()
        assert h.broker.positions()[0].qty == pytest.approx(al.holding(BTC))


def test_a_hand_close_of_a_new_position_is_not_booked_as_the_previous_positions_liquidation(h, venue):
    """The same cycle books a liquidation and re-enters the symbol seconds later: the venue's force orders are
    asked from a minute before the new position opened, and the earlier position's liquidation is not its own."""
    no_stop = Bracket(stop_distance=0.0, take_profit_distance=0.0, trail_pct=0.0, max_hold_s=0.0)
    h.entry(lev=20, bracket=no_stop)
    h.settle()
    pos1 = h.broker.positions()[0]
    venue.set_price("BTCUSDT", pos1.liquidation_price * 0.98)      # position 1 liquidated
    trades = h.settle(T0 + timedelta(hours=1))
    assert [t.exit_reason for t in trades] == ["liquidation"]
    # the same cycle's decision re-enters the symbol seconds later (within a minute of the liquidation)
    px = 41000.0
    venue.set_price("BTCUSDT", px)
    h.broker.last_price[BTC] = px
    h.entry(lev=5, bracket=no_stop)
    h.settle(T0 + timedelta(hours=1))
    pos2 = h.broker.positions()[0]
    # position 2 is later closed by hand in the app, in profit
    venue.set_price("BTCUSDT", 41500.0)
    BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5).place_order(
        OrderSpec("web_manual_close", BTC, Side.SELL, pos2.qty, reduce_only=True))
    h.broker.last_price[BTC] = 41500.0
    trades = h.settle(T0 + timedelta(hours=2))
    assert [t.exit_reason for t in trades] == ["closed_on_venue"], [(t.exit_reason, t.exit_price, t.pnl) for t in trades]
    assert trades[0].exit_price == pytest.approx(41500.0)
    assert trades[0].exit_order_id != exit_order_id(pos1.entry_order_id)
