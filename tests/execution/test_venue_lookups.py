"""What the venue broker does when a venue answers an exit or a lookup badly at the wrong moment: an exit refused
while the venue's positions cannot be read, and a stop that filled while its own order cannot be seen yet
(Binance's algo order FINISHED with its triggered order not readable; Bybit's closed-order cache emptied by a
restart while the order history lags, both documented by the venues and modelled by the fakes)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tracer.execution.broker import Bracket, exit_order_id
from tracer.execution.venue_broker import stop_order_id
from tracer.execution.venues.bybit import BybitFuturesClient
from tracer.models import Order, OrderType, PositionSide, Side

from venue_harness import BTC, KEY, SECRET, T0, Harness

STOP_1000 = Bracket(stop_distance=1000.0, take_profit_distance=0.0, trail_pct=0.0, max_hold_s=0.0)


def _exit(h, reason: str) -> Order:
    """The agent's exit of its one position, under the position's current exit id (as every exit is built)."""
    pos = h.broker.positions()[0]
    return Order(exit_order_id(pos.entry_order_id, pos.exit_seq), h.broker.agent, BTC,
                 Side.SELL if pos.side is PositionSide.LONG else Side.BUY, pos.qty, OrderType.MARKET,
                 reduce_only=True, purpose="exit", reason=reason, created_at=h.broker.clock())


@pytest.mark.parametrize("fault", ["percent_price_then_503", "auth_blip"])
def test_an_exit_refused_while_positions_are_unreadable_leaves_the_next_exit_sendable(hc, venue, clock, fault):
    hc.entry(qty=0.01, bracket=STOP_1000)
    hc.settle(clock.now)
    if fault == "percent_price_then_503":
        # -4131: the best price is outside the PERCENT_PRICE filter (a fast market); then the positions read fails
        venue.inject("POST /fapi/v1/order", -4131, times=1, msg="The counterparty's best price does not meet the "
                                                                 "PERCENT_PRICE filter limit.")
        venue.inject("/fapi/v2/positionRisk", "5xx", times=3)
    else:
        venue.inject("*", -2015, times=2)       # a short key/IP permission glitch: the exit and the read after it
    first = hc.send(_exit(hc, "signal"))
    assert hc.state(first.client_order_id) == "rejected"
    kinds = [r["kind"] for r in hc.store.conn.execute("SELECT kind FROM venue_events WHERE kind='exit_refused'")]
    assert kinds == ["exit_refused"]            # said: the venue may still hold it
    clock.advance(hours=1)
    hc.settle(clock.now)
    clock.advance(hours=1)
    again = hc.send(_exit(hc, "time_stop"))     # the next exit decision: a new id, sent, filled
    hc.settle(clock.now)
    assert again.client_order_id != first.client_order_id and venue.post_counts[again.client_order_id] == 1
    assert "BTCUSDT" not in venue.positions and hc.broker.positions() == []


def test_a_binance_stop_finished_while_its_order_is_not_visible_is_booked_at_its_fill(hc, venue, clock):
    o = hc.entry(qty=0.01, bracket=STOP_1000)
    hc.settle(clock.now)
    pos = hc.broker.positions()[0]
    venue.set_price("BTCUSDT", pos.stop_loss - 10)          # the venue stop triggers and fills
    fill_px = float(next(t for t in venue.trades if t["side"] == "SELL")["price"])
    hc.broker.last_price[BTC] = pos.stop_loss + 300         # the agent's last close: not the fill
    venue.inject("GET /fapi/v1/order", -2013, times=1)     # its triggered order not found on one read
    trades = []
    for _ in range(4):
        clock.advance(minutes=20)
        trades += hc.settle(clock.now)
    sid = stop_order_id(o.client_order_id, 0)
    assert [(t.exit_reason, t.exit_order_id) for t in trades] == [("stop_loss", sid)]
    assert trades[0].exit_price == pytest.approx(fill_px)
    assert abs(hc.wallet_diff or 0.0) < 0.01


def test_a_bybit_stop_filled_during_a_restart_is_booked_as_the_stop(hb, by):
    hb.entry(qty=0.01, bracket=Bracket(stop_distance=1000.0, take_profit_distance=2000.0, trail_pct=0.0,
                                       max_hold_s=0.0))
    hb.settle()
    hb.settle(T0 + timedelta(minutes=5))            # anchors the wallet check
    pos = hb.broker.positions()[0]
    sid = stop_order_id(pos.entry_order_id)
    by.history_lag_s = 3600.0                        # the order history lags ...
    by.set_price("BTCUSDT", 40500.0)                 # ... the stop (41,000) fills at 40,500 ...
    by.restart()                                     # ... and a restart empties realtime's closed-order cache
    stop_fee = float(by.order_by_link(sid)["cumExecFee"])
    trades = hb.settle(T0 + timedelta(hours=1))
    assert trades == [] and hb.broker.positions() != []      # not booked as a close outside the agent
    by.history_lag_s = 0.0                           # the history catches up
    trades += hb.settle(T0 + timedelta(hours=2))
    trades += hb.settle(T0 + timedelta(hours=3))
    assert [(t.exit_reason, t.exit_order_id) for t in trades] == [("stop_loss", sid)]
    assert trades[0].exit_price == pytest.approx(40500.0)
    assert trades[0].fees == pytest.approx(pos.entry_fee + stop_fee)
    assert hb.state(sid) == "filled" and hb.wallet_diff == pytest.approx(0.0, abs=1e-6)


def test_a_binance_stop_finished_whose_order_stays_unreadable_is_booked_from_its_trades(hc, venue, clock):
    """Its triggered order is never found by id (-2013 every time), at the agent's hourly cadence: what it filled is
    read from the trade list by the algo order's actualOrderId, with no stuck-stop alert and no exit for a
    position already closed."""
    o = hc.entry(qty=0.01, bracket=STOP_1000)
    hc.settle(clock.now)
    pos = hc.broker.positions()[0]
    venue.set_price("BTCUSDT", pos.stop_loss - 10)
    fill_px = float(next(t for t in venue.trades if t["side"] == "SELL")["price"])
    venue.inject("GET /fapi/v1/order", -2013, times=None)
    trades = []
    for _ in range(3):
        clock.advance(hours=1)
        trades += hc.settle(clock.now)
    kinds = [r["kind"] for r in hc.store.conn.execute("SELECT kind FROM venue_events")]
    assert [(t.exit_reason, t.exit_order_id) for t in trades] == [("stop_loss", stop_order_id(o.client_order_id, 0))]
    assert trades[0].exit_price == pytest.approx(fill_px)
    assert "stop_stuck_triggered" not in kinds and "wallet_mismatch" not in kinds


@pytest.mark.parametrize("restart", [True, False])
def test_a_bybit_stop_filled_while_the_agent_was_down_eight_days_is_booked_at_its_fill(by, tmp_path, clock, restart):
    """The agent is down 8 days; its venue stop fills meanwhile. Bybit's order history and execution list answer the
    past 7 days unless given a range (and an orderId makes the list ignore the range): the stop is still found,
    after a Bybit restart emptied realtime's cache too, and booked at its fill with its fee, not as a close outside
    the agent at the last price with fee 0."""
    client = BybitFuturesClient(KEY, SECRET, by.url, timeout_s=2.0)
    hb = Harness(tmp_path, [client], clock=clock)
    hb.entry(qty=0.01, bracket=Bracket(stop_distance=1000.0, take_profit_distance=2000.0, trail_pct=0.0,
                                       max_hold_s=0.0))
    hb.settle(clock.now)
    pos = hb.broker.positions()[0]
    by.set_price("BTCUSDT", 40800.0)                 # the stop (41,000) fills at 40,800
    by.clock_offset_ms += 8 * 86_400_000             # eight days later, on the venue's clock and the agent's
    if restart:
        by.restart()
    client.sync_time()
    clock.advance(days=8)
    trades = hb.settle(clock.now)
    assert [(t.exit_reason, t.exit_order_id, t.exit_price) for t in trades] == \
        [("stop_loss", stop_order_id(pos.entry_order_id), 40800.0)], hb.events()
    assert trades[0].fees == pytest.approx(pos.entry_fee + 0.01 * 40800 * 0.00055)
    assert hb.broker.positions() == [] and "order_missing" not in hb.events()
