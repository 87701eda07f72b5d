"""Market orders a venue keeps working: Alpaca's ``pending_cancel`` ("the order is waiting to be canceled") can
still fill, and can last minutes (Alpaca order lifecycle; forum "orders are showing pending cancel"). What such an
order filled is booked only when the venue ends it; one still working after ``finish_grace`` is cancelled with an
alert, and an exit that then ends unfilled goes out again. Fake Alpaca on 127.0.0.1 through alpaca-py."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tracer.execution.broker import Bracket, exit_order_id
from tracer.execution.venue_broker import VenueBroker
from tracer.execution.venues.alpaca import AlpacaSpotClient
from tracer.models import Bar, Order, Side

from venue_harness import ALPACA_KEYS, BTC, T0, Clock, Harness


@pytest.fixture
def clock():
    return Clock(T0)


@pytest.fixture
def hs(alpaca, tmp_path, clock):
    client = AlpacaSpotClient(*ALPACA_KEYS, alpaca.url, timeout_s=2)
    h = Harness(tmp_path, [client])
    h.broker = VenueBroker("hybrid", [client], h.store, logging.getLogger("test.working"), futures=False,
                           backoff_s=0.0, sleep=h.slept.append, alert=h.alerts.append, clock=clock)
    h.broker.last_price[BTC] = 42000.0
    return h


def test_an_entry_filled_in_part_and_pending_cancel_is_booked_when_the_venue_ends_it(hs, alpaca, clock):
    alpaca.inject("POST /v2/orders", "partial", fraction=0.5)
    o = hs.entry(qty=0.01)
    vo = alpaca.order(o.client_order_id)
    vo.update(status="pending_cancel", canceled_at=None)
    hs.settle(clock.now)
    assert hs.state(o.client_order_id) == "submitted" and hs.broker.positions() == []
    # the rest fills before the cancel takes effect
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    alpaca._fill(vo, BTC, "buy", Decimal("0.005"), Decimal("42000"), now, complete=True)
    vo.update(filled_qty="0.01", status="filled")
    clock.advance(minutes=1)
    hs.settle(clock.now)
    row = hs.store.order(o.client_order_id)
    fills = hs.store.conn.execute("SELECT SUM(qty) AS q FROM fills WHERE client_order_id=?",
                                  (o.client_order_id,)).fetchone()["q"]
    assert row["state"] == "filled" and row["filled_qty"] == pytest.approx(0.01)
    assert fills == pytest.approx(0.01)
    assert "position_mismatch" not in hs.events() and "orphan_cancelled" not in hs.events()


def test_an_exit_the_venue_keeps_working_is_cancelled_with_an_alert_and_sent_again(hs, alpaca, clock):
    hs.entry(qty=0.01, bracket=Bracket(stop_distance=2000.0, take_profit_distance=0.0, trail_pct=0.0,
                                       max_hold_s=0.0))
    hs.settle(clock.now)
    pos = hs.broker.positions()[0]
    cash, held = alpaca.cash, dict(alpaca.holdings)
    ex = hs.send(Order(exit_order_id(pos.entry_order_id, pos.exit_seq), "hybrid", BTC, Side.SELL, pos.qty,
                       reduce_only=True, purpose="exit", reason="signal", created_at=clock.now))
    alpaca.cash, alpaca.holdings = cash, held            # not filled after all: the venue keeps it working
    alpaca.order(ex.client_order_id).update(status="pending_cancel", filled_qty="0", filled_avg_price=None,
                                            filled_at=None)
    trades = []
    for k in range(1, 4):
        clock.advance(hours=1)
        alpaca.set_price(BTC, 30000.0)
        hs.broker.on_bar(Bar(BTC, clock.now - timedelta(hours=1), 31000.0, 31500.0, 29000.0, 30000.0, 1.0))
        trades += hs.settle(clock.now)
    assert alpaca.order(ex.client_order_id)["status"] == "canceled"
    assert [a for a in hs.alerts if "order stuck" in a]
    assert hs.state(ex.client_order_id) == "canceled"
    assert [t.exit_reason for t in trades] == ["signal"] and trades[0].exit_price == pytest.approx(30000.0, rel=1e-2)
    assert hs.broker.positions() == [] and float(alpaca.holdings.get(BTC, 0)) < 0.001   # sold (fee dust left)
