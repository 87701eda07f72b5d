"""Money the venue reports, booked as the venue reports it, through the real python-binance / pybit clients over
HTTP against the fake venues: funding still owed to a closed position, fills older than a history's 7-day default,
a delisting settlement, and a close by hand (the venue's own price and commission, not the agent's last price)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from fakes.binance_futures_venue import FakeBinanceFutures
from tracer.execution.broker import Bracket, exit_order_id
from tracer.execution.venue import OrderSpec
from tracer.execution.venue_broker.money import funding_settled_by
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from tracer.execution.venues.bybit import BybitFuturesClient
from tracer.models import Order, Side

from venue_harness import BTC, KEY, SECRET, T0, Clock, Harness

DAY_MS = 86_400_000


def open_long(h, qty=0.01, stop=1000.0):
    h.entry(qty=qty, bracket=Bracket(stop_distance=stop, take_profit_distance=2 * stop, trail_pct=0.0, max_hold_s=0.0))
    h.settle()
    h.settle(T0 + timedelta(minutes=5))           # the wallet's comparison anchors with nothing in flight
    assert "wallet_anchored" in h.events()
    return h.broker.positions()[0]


def exit_now(h, pos, at):
    h.send(Order(exit_order_id(pos.entry_order_id, pos.exit_seq), h.broker.agent, BTC, Side.SELL, pos.qty,
                 reduce_only=True, purpose="exit", reason="signal", created_at=at))


# --- 0. funding paid out of an isolated wallet, then a liquidation ---------------------------------------------
def test_funding_paid_just_before_a_liquidation_is_lost_once(h, venue):
    """Binance takes an isolated position's funding out of its isolated wallet; when the position is then
    liquidated before the next cycle, the margin the broker read before the payment already held that money."""
    pos = open_long(h, 0.01, stop=15000.0)               # a stop beyond the liquidation price
    m0, fee0 = pos.margin, pos.entry_fee
    wallet0 = venue.balance
    paid = -venue.apply_funding("BTCUSDT", 0.001)
    assert paid > 0.1
    venue.set_price("BTCUSDT", venue.liquidation_price("BTCUSDT") * 0.98)
    assert "BTCUSDT" not in venue.positions
    assert wallet0 - venue.balance == pytest.approx(m0)  # the venue took the margin put up, funding inside it
    trades = h.settle(T0 + timedelta(hours=1))
    assert [t.exit_reason for t in trades] == ["liquidation"]
    assert trades[0].pnl == pytest.approx(-(m0 + fee0), abs=0.01)
    assert trades[0].funding == pytest.approx(-paid)     # the funding is still reported on the trade
    for k in (2, 3):
        h.settle(T0 + timedelta(hours=k))
    assert h.wallet_diff == pytest.approx(0.0, abs=0.01) and "wallet_mismatch" not in h.events()


def test_funding_seen_a_cycle_before_a_liquidation_is_lost_once_too(h, venue):
    pos = open_long(h, 0.01, stop=15000.0)
    venue.apply_funding("BTCUSDT", 0.001)
    h.settle(T0 + timedelta(hours=1))                    # the funding booked and the margin read after it
    assert h.broker.positions()[0].margin < pos.margin
    venue.set_price("BTCUSDT", venue.liquidation_price("BTCUSDT") * 0.98)
    for k in (2, 3, 4):
        h.settle(T0 + timedelta(hours=k))
    assert h.wallet_diff == pytest.approx(0.0, abs=0.01) and "wallet_mismatch" not in h.events()


def test_funding_the_history_shows_after_the_margin_read_is_lost_once_at_a_liquidation(h, venue):
    """The isolated wallet paid the funding before the cycle read it; the income history shows the payment only
    a cycle later, after the liquidation: that payment was inside the margin read, not on top of it."""
    pos = open_long(h, 0.01, stop=15000.0)
    m0, fee0 = pos.margin, pos.entry_fee
    venue.apply_funding("BTCUSDT", 0.001)
    venue.inject("/fapi/v1/income", "empty", times=1)      # this cycle's lookup: not in the history yet
    h.settle(T0 + timedelta(hours=1))                    # the margin read holds the payment
    venue.set_price("BTCUSDT", venue.liquidation_price("BTCUSDT") * 0.98)
    trades = []
    for k in (2, 3, 4):
        trades += h.settle(T0 + timedelta(hours=k))
    assert [t.exit_reason for t in trades] == ["liquidation"]
    assert trades[0].pnl == pytest.approx(-(m0 + fee0), abs=0.01)
    assert h.wallet_diff == pytest.approx(0.0, abs=0.01) and "wallet_mismatch" not in h.events()


# --- 1. funding owed to a closed position ------------------------------------------------------------------
def test_funding_settled_by_is_the_next_funding_time_after_the_close_and_a_grace():
    at = datetime(2026, 11, 25, 7, 59, tzinfo=timezone.utc)
    assert funding_settled_by(at) == datetime(2026, 11, 25, 8, 15, tzinfo=timezone.utc)
    assert funding_settled_by(at.replace(hour=8, minute=0)) == datetime(2026, 11, 25, 16, 15, tzinfo=timezone.utc)
    assert funding_settled_by(at.replace(hour=23)) == datetime(2026, 11, 26, 0, 15, tzinfo=timezone.utc)


def test_funding_of_a_closed_position_is_asked_again_until_the_history_shows_it(h, venue):
    """Before, the owed entry was dropped after the first lookup that answered, even an answer that did not show
    the payment yet (the income history is not instantaneous): the payment was never booked."""
    pos = open_long(h)
    paid = -venue.apply_funding("BTCUSDT", 0.0002)
    venue.inject("/fapi/v1/income", "empty", times=2)    # this cycle's lookup and the one right after the close
    exit_now(h, pos, T0 + timedelta(hours=8))
    h.settle(T0 + timedelta(hours=8))
    assert h.broker.positions() == []
    for k in (9, 10):                                    # the history shows it now
        h.settle(T0 + timedelta(hours=k))
    rows = h.store.funding_booked("futures")
    assert len(rows) == 1 and rows[0]["amount"] == pytest.approx(paid)
    assert h.store.trades("futures")[0]["funding"] == pytest.approx(-paid)       # on the trade it was paid for
    assert h.wallet_diff == pytest.approx(0.0, abs=1e-6)


def test_funding_of_a_closed_position_is_not_asked_for_ever(venue, tmp_path):
    """Nothing shows up: asked until the first funding time after the close and the grace, then forgotten
    (memo written), so a closed symbol does not cost a lookup every cycle for good."""
    clock = Clock()
    h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], clock=clock)
    pos = open_long(h)
    exit_now(h, pos, T0 + timedelta(hours=1))
    h.settle(T0 + timedelta(hours=1))
    assert h.broker.positions() == [] and h.broker._funding_owed
    h.settle(T0 + timedelta(hours=2))
    assert h.broker._funding_owed                        # an empty answer may lag: asked again
    clock.advance(hours=8, minutes=16)
    h.settle(T0 + timedelta(hours=3))
    assert h.broker._funding_owed == {}
    assert h.store.notify_state(f"funding_owed:{h.broker.agent}") == "{}"
    asked = sum(r.path == "/fapi/v1/income" for r in venue.requests)
    h.settle(T0 + timedelta(hours=4))
    assert sum(r.path == "/fapi/v1/income" for r in venue.requests) == asked


# --- 2. fills older than the trade history's 7-day default ------------------------------------------------
def test_fake_binance_user_trades_answer_the_last_7_days_without_a_time_range(venue):
    c = BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)
    c.place_order(OrderSpec("old-1", BTC, Side.BUY, 0.01))
    venue.trades[0]["time"] -= 8 * DAY_MS
    assert c._c.futures_account_trades(symbol="BTCUSDT") == []
    now = venue.now_ms()            # once: two readings a millisecond apart make the range over 7 days
    assert len(c._c.futures_account_trades(symbol="BTCUSDT", startTime=now - 9 * DAY_MS,
                                           endTime=now - 2 * DAY_MS)) == 1


def test_binance_entry_filled_while_the_agent_was_down_8_days_is_booked_with_its_fee(venue, tmp_path):
    """Before, the order's trades were asked by ``orderId`` alone, which covers only the last 7 days: after the
    grace the entry was booked from the order's own figures with fee 0 (``fills_incomplete``)."""
    clock = Clock()
    h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], clock=clock)
    h.entry(qty=0.01)
    for t in venue.trades:                               # it all happened 8 days ago
        t["time"] -= 8 * DAY_MS
    for o in venue.orders.values():
        o["time"] -= 8 * DAY_MS
        o["updateTime"] -= 8 * DAY_MS
    h.settle()
    clock.advance(minutes=16)
    h.settle(T0 + timedelta(minutes=20))
    pos = h.broker.positions()[0]
    assert pos.entry_fee == pytest.approx(0.01 * 42000.0 * venue.taker_fee, rel=1e-6)
    assert "fills_incomplete" not in h.events()


def test_bybit_entry_filled_while_the_agent_was_down_8_days_is_booked_with_its_fee(by, tmp_path):
    clock = Clock()
    h = Harness(tmp_path, [BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5)], clock=clock)
    h.entry(qty=0.01)
    for e in by.executions:
        e["execTime"] = str(int(e["execTime"]) - 8 * DAY_MS)
    for o in by.orders.values():
        o["createdTime"] = str(int(o["createdTime"]) - 8 * DAY_MS)
        o["updatedTime"] = str(int(o["updatedTime"]) - 8 * DAY_MS)
    h.settle()
    clock.advance(minutes=16)
    h.settle(T0 + timedelta(minutes=20))
    pos = h.broker.positions()[0]
    fee = sum(float(e["execFee"]) for e in by.executions)
    assert fee > 0 and pos.entry_fee == pytest.approx(fee, rel=1e-6)
    assert "fills_incomplete" not in h.events()


# --- 3. a delisting settlement (settlement_autoclose-) ------------------------------------------------------
class DelistingVenue(FakeBinanceFutures):
    """Binance settles a delisted contract's position itself under ``settlement_autoclose-`` (doc "Event: Order
    Update", special client order ids) and charges the taker fee (Binance FAQ "Delisting of Futures
    Contracts"). ``listed``: whether "User's Force Orders" (documented for LIQUIDATION and ADL) lists it."""

    listed = False

    def delist_settle(self, symbol: str, price: float) -> None:
        from decimal import Decimal
        with self._lock:
            pos = self.positions[symbol]
            side = "SELL" if pos["amt"] > 0 else "BUY"
            qty = abs(pos["amt"])
            self.prices[symbol] = price
            oid = self._forced_order(symbol, side, Decimal(qty), price, "settlement_autoclose")
            self._execute(symbol, side, qty, price, oid)

    def _force_orders(self, params):
        out = super()._force_orders(params)
        if self.listed:
            out += [dict(o) for o in self.orders.values() if str(o["clientOrderId"]).startswith("settlement_")
                    and o["symbol"] == params.get("symbol", o["symbol"])
                    and int(params.get("startTime", 0)) <= o["time"] <= int(params.get("endTime", 2**62))]
        return out


@pytest.mark.parametrize("fee_asset", ["USDT", "BNB"])
@pytest.mark.parametrize("listed", [False, True])
def test_delisting_settlement_is_booked_at_its_price_with_its_fee_not_as_a_liquidation(tmp_path, listed, fee_asset):
    """Before, an unlisted settlement was a close by hand at the last price with fee 0, and a listed one a
    liquidation (every forced order not ``adl_autoclose`` was): the whole margin booked as lost. A fee paid in
    BNB is booked at its USDT value and raises no wallet mismatch (the USDT wallet never paid it)."""
    with DelistingVenue(KEY, SECRET) as venue:
        venue.listed = listed
        if fee_asset == "BNB":
            venue.bnb, venue.fee_asset = 1.0, "BNB"
            venue.set_price("BNBUSDT", 600.0)
        h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)])
        pos = open_long(h)
        venue.delist_settle("BTCUSDT", 42300.0)
        h.broker.last_price[BTC] = 42100.0               # the agent's last price is not the settlement's
        trades = h.settle(T0 + timedelta(hours=1))
        assert [t.exit_reason for t in trades] == ["settlement"]
        fee = 0.01 * 42300.0 * venue.taker_fee
        assert trades[0].exit_price == pytest.approx(42300.0)
        assert trades[0].fees == pytest.approx(pos.entry_fee + fee, rel=1e-6)
        assert trades[0].pnl == pytest.approx((42300.0 - pos.entry_price) * 0.01 - pos.entry_fee - fee, rel=1e-6)
        for k in (2, 3):
            h.settle(T0 + timedelta(hours=k))
        assert h.wallet_diff == pytest.approx(0.0, abs=1e-6) and "wallet_mismatch" not in h.events()


# --- 4. a close by hand: the venue's price and commission ---------------------------------------------------
def test_binance_position_closed_by_hand_is_booked_at_the_venue_price_and_fee(h, venue):
    """Before, booked at the agent's last price with fee 0 though userTrades reports both."""
    pos = open_long(h)
    venue.set_price("BTCUSDT", 42600.0)
    BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5).place_order(
        OrderSpec("web_manual_close", BTC, Side.SELL, 0.01, reduce_only=True))
    venue.set_price("BTCUSDT", 42500.0)
    h.broker.last_price[BTC] = 42500.0                 # the loop's price feed moved on
    trades = h.settle(T0 + timedelta(hours=1))
    assert [t.exit_reason for t in trades] == ["closed_on_venue"]
    fee = 0.01 * 42600.0 * venue.taker_fee
    assert trades[0].exit_price == pytest.approx(42600.0)
    assert trades[0].fees == pytest.approx(pos.entry_fee + fee, rel=1e-6)
    assert trades[0].pnl == pytest.approx((42600.0 - pos.entry_price) * 0.01 - pos.entry_fee - fee, rel=1e-6)
    h.settle(T0 + timedelta(hours=2))
    assert h.wallet_diff == pytest.approx(0.0, abs=1e-6)


def test_binance_parts_closed_by_hand_are_each_booked_once_with_their_commission(venue, tmp_path):
    """Two parts closed by hand, one after the other: each booked with its own trades' price and commission
    (the first's trades are not taken again for the second), and the wallet reconciles."""
    clock = Clock()
    h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], clock=clock)
    pos = open_long(h, 0.02)
    hand = BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)
    booked = []
    for k, (px, qty) in enumerate([(42500.0, 0.005), (42700.0, 0.004)]):
        venue.set_price("BTCUSDT", px)
        hand.place_order(OrderSpec(f"web_manual_part_{k}", BTC, Side.SELL, qty, reduce_only=True))
        venue.set_price("BTCUSDT", px - 50.0)
        h.broker.last_price[BTC] = px - 50.0
        h.settle(T0 + timedelta(hours=1 + 2 * k))
        clock.advance(minutes=16)
        booked += h.settle(T0 + timedelta(hours=2 + 2 * k))
    assert [(t.exit_reason, t.qty, t.exit_price) for t in booked] == \
        [("closed_on_venue", pytest.approx(0.005), pytest.approx(42500.0)),
         ("closed_on_venue", pytest.approx(0.004), pytest.approx(42700.0))]
    assert booked[0].fees == pytest.approx(pos.entry_fee / 4 + 0.005 * 42500.0 * venue.taker_fee, rel=1e-6)
    assert booked[1].fees == pytest.approx(pos.entry_fee * 0.2 + 0.004 * 42700.0 * venue.taker_fee, rel=1e-6)
    h.settle(T0 + timedelta(hours=6))
    assert h.broker.positions()[0].qty == pytest.approx(0.011)
    assert h.wallet_diff == pytest.approx(0.0, abs=1e-6)


def test_a_close_by_hand_whose_trades_cannot_be_read_is_booked_at_the_last_price_and_said(h, venue):
    """The venue cannot answer its trades: the old judgement (last price, fee 0), with an event saying so."""
    open_long(h)
    venue.set_price("BTCUSDT", 42300.0)
    h.broker.last_price[BTC] = 42300.0
    BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5).place_order(
        OrderSpec("web_manual_close", BTC, Side.SELL, 0.01, reduce_only=True))
    venue.inject("GET /fapi/v1/userTrades", -1000, times=None)
    trades = h.settle(T0 + timedelta(hours=1))
    assert [(t.exit_reason, t.exit_price) for t in trades] == [("closed_on_venue", pytest.approx(42300.0))]
    assert "outside_fills_unreadable" in h.events()
    # said on the exit itself, where an explanation of the trade (tracer explain, the cockpit) reads it
    reason = h.store.order(trades[0].exit_order_id)["state_reason"]
    assert "assumed: booked at 42300 with fee 0" in reason


def test_bybit_position_closed_by_hand_is_booked_with_the_venue_fee(by, tmp_path):
    h = Harness(tmp_path, [BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5)])
    pos = open_long(h)
    by.set_price("BTCUSDT", 42300.0)
    BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5).place_order(
        OrderSpec("web-manual-close", BTC, Side.SELL, 0.01, reduce_only=True))
    h.broker.last_price[BTC] = 42200.0
    trades = h.settle(T0 + timedelta(hours=1))
    assert [t.exit_reason for t in trades] == ["closed_on_venue"]
    fee = sum(float(e["execFee"]) for e in by.executions if e["orderLinkId"] == "web-manual-close")
    assert fee > 0
    assert trades[0].exit_price == pytest.approx(42300.0)
    assert trades[0].fees == pytest.approx(pos.entry_fee + fee, rel=1e-6)
    h.settle(T0 + timedelta(hours=2))
    assert h.wallet_diff == pytest.approx(0.0, abs=1e-6)


# --- fees paid in BNB -----------------------------------------------------------------------------------------
def test_fees_paid_in_bnb_are_booked_and_raise_no_false_wallet_mismatch(h, venue, tmp_path):
    """Binance's BNB fee discount takes the commission from the futures wallet's BNB: booked as a fee at its USDT
    value (the P&L), while the USDT wallet the check compares moves by the P&L only. Across a restart too."""
    venue.bnb, venue.fee_asset = 1.0, "BNB"
    venue.set_price("BNBUSDT", 600.0)
    pos = open_long(h, 0.01)
    assert pos.entry_fee == pytest.approx(0.01 * 42000.0 * venue.taker_fee, rel=1e-6)
    exit_now(h, pos, T0 + timedelta(hours=1))
    trades = []
    for k in (1, 2, 3):
        trades += h.settle(T0 + timedelta(hours=k))
    assert [t.exit_reason for t in trades] == ["signal"] and trades[0].fees == pytest.approx(2 * pos.entry_fee, rel=1e-3)
    assert venue.bnb < 1.0
    assert h.wallet_diff == pytest.approx(0.0, abs=1e-6) and "wallet_mismatch" not in h.events()
    h2 = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)])    # a restart
    h2.broker.restore([], [], h.broker.realized_pnl, h.broker.fees_paid, {BTC: 42000.0})
    h2.settle(T0 + timedelta(hours=4))
    assert h2.wallet_diff == pytest.approx(0.0, abs=1e-6)
