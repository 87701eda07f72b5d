"""What a venue broker tells the risk book before the cycle's decisions: the free money of the venue new entries
go to (the margin cap's cash), and every position the venue holds for it, including an entry found there after
an unclear POST. Fake venues on 127.0.0.1 through the real SDKs."""
from __future__ import annotations

import logging

import pytest

from fakes.binance_futures_venue import FakeBinanceFutures
from fakes.bybit_venue import FakeBybit
from tracer.execution.venue_broker import VenueBroker
from tracer.execution.venues.alpaca import AlpacaSpotClient
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from tracer.execution.venues.bybit import BybitFuturesClient

from venue_harness import ALPACA_KEYS, BTC, KEY, SECRET, T0, Clock, Harness

def test_the_cash_for_new_entries_is_the_entry_venues_free_margin_not_both_venues(tmp_path):
    with FakeBinanceFutures(KEY, SECRET, wallet=200.0) as bn, FakeBybit(KEY, SECRET, wallet=10_000.0) as by:
        h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, bn.url, timeout_s=0.5),
                               BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5)])
        h.settle(T0)
        assert h.broker.balance() == pytest.approx(200.0)          # entries go to Binance: its 200 only
        assert h.broker.equity() == pytest.approx(10_200.0)        # the loss limits count both
        bn.down()
        h.broker.venues["binance"].down_until = T0.replace(year=2100)   # Binance unusable: entries go to Bybit
        assert h.broker._entry_venue() == "bybit"
        assert h.broker.balance() == pytest.approx(10_000.0)


def test_an_unconfirmed_entry_found_on_the_venue_is_a_position_before_the_decisions(tmp_path, alpaca):
    clock = Clock(T0)
    client = AlpacaSpotClient(*ALPACA_KEYS, alpaca.url, timeout_s=2)
    h = Harness(tmp_path, [client])
    h.broker = VenueBroker("hybrid", [client], h.store, logging.getLogger("test.book"), futures=False,
                           backoff_s=0.0, sleep=h.slept.append, alert=h.alerts.append, clock=clock)
    h.broker.last_price[BTC] = 42000.0
    # the venue books and fills the entry, the answer is lost, and the venue is down for the lookup
    alpaca.inject("POST /v2/orders", "lost")
    place = client.place_order

    def place_then_outage(spec):
        try:
            return place(spec)
        finally:
            alpaca.down()
    client.place_order = place_then_outage
    a = h.entry(qty=0.01, symbol=BTC)
    client.place_order = place
    assert h.state(a.client_order_id) == "new"
    h.settle(clock.now)
    assert alpaca.holding(BTC) > 0 and not h.broker.positions()
    clock.advance(hours=1)
    alpaca.up()
    h.broker.sync(clock.now)              # the loop's sync before the decisions: one, not two
    assert [p.symbol for p in h.broker.positions()] == [BTC]
    kinds = [r["kind"] for r in h.store.venue_events("hybrid")]
    assert "adoption_deferred" in kinds and "position_adopted" not in kinds
