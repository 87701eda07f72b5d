"""A venue position awaited as an entry's fill, with two futures venues (Binance main, Bybit backup), through the real
SDKs over HTTP against the fakes: an entry is awaited only on the venue it went to, never as the fill of a position
on the other venue; and the wallet check, held off while an entry's POST is unclear, comes back after the grace
even while that entry's venue stays down."""
from __future__ import annotations


import pytest

from fakes.binance_futures_venue import FakeBinanceFutures
from fakes.bybit_venue import FakeBybit
from tracer.execution.venue import OrderSpec, VenueOrderType
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from tracer.execution.venues.bybit import BybitFuturesClient
from tracer.models import Side

from venue_harness import BTC, KEY, SECRET, Clock, Harness


@pytest.fixture
def venues():
    with FakeBinanceFutures(KEY, SECRET) as bn, FakeBybit(KEY, SECRET) as by:
        yield bn, by


def test_wallet_check_comes_back_while_an_unclear_entry_waits_on_a_down_venue(venues, tmp_path):
    bn, by = venues
    clock = Clock()
    h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, bn.url, timeout_s=0.5),
                           BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5)], clock=clock)
    by.down()                                   # the backup unreachable at the start: anchored on Binance alone
    h.settle(clock.now)
    assert h.wallet_diff is not None and set(h.broker._anchor()["since_ms"]) == {"binance"}
    by.up()
    bn.inject("POST /fapi/v1/order", "timeout", when="late", seconds=0.6)
    cid = h.entry(qty=0.01).client_order_id
    assert h.state(cid) == "new"
    bn.down()                                   # Binance down for hours; the backup is reached, new in the wallets
    diffs = []
    for _ in range(12):                         # six hours, a cycle every 30 minutes
        clock.advance(minutes=30)
        h.settle(clock.now)
        diffs.append(h.wallet_diff)
    by.wallet -= 500.0                          # 500 USDT leave the backup's wallet without any booking
    for _ in range(3):
        clock.advance(minutes=30)
        h.settle(clock.now)
        diffs.append(h.wallet_diff)
    assert "bybit" in h.broker._balance and h.state(cid) == "new"
    assert "wallet_mismatch" in h.events(), (
        f"no wallet check for {len(diffs) / 2:g} h while {cid} stays new on the down venue: diffs={diffs}; "
        f"anchor={h.broker._anchor()}; 500 USDT gone from bybit unnoticed")


def test_binance_entry_is_not_booked_from_a_hand_opened_bybit_position(venues, tmp_path):
    bn, by = venues
    clock = Clock()
    h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, bn.url, timeout_s=0.5),
                           BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5)], clock=clock)
    h.settle(clock.now)
    # the Binance entry's POST times out (processed later); Binance then goes down for a while
    bn.inject("POST /fapi/v1/order", "timeout", when="late", seconds=0.6)
    o = h.entry(qty=0.01)
    cid = o.client_order_id
    assert h.state(cid) == "new" and h.store.order(cid)["venue"] == "binance"
    bn.down()
    # meanwhile the operator holds a long BTC on the backup, opened by hand at another price
    by.set_price("BTCUSDT", 40000.0)
    BybitFuturesClient(KEY, SECRET, by.url).place_order(OrderSpec("manual-1", BTC, Side.BUY, 0.02,
                                                                  VenueOrderType.MARKET))
    for _ in range(4):
        clock.advance(minutes=6)
        h.settle(clock.now)
    row = h.store.order(cid)
    booked = [(p.entry_order_id, p.qty, p.entry_price, h.broker._pos_venue.get(p.symbol)) for p in h.broker.positions()]
    # Binance comes back and processes the late POST: the entry's real fill is there
    bn.up()
    bn.process_late()
    clock.advance(minutes=6)
    h.settle(clock.now)
    clock.advance(minutes=1)
    h.settle(clock.now)
    bn_pos = float(bn.positions.get("BTCUSDT", {}).get("amt", 0) or 0) if isinstance(bn.positions.get("BTCUSDT"), dict) else bn.positions.get("BTCUSDT")
    bn_stops = [c for c in bn.orders_by_client_id if c.startswith(cid[:33]) and c != cid] + \
        [a.get("clientAlgoId") for a in bn.algo_orders.values()]
    assert row["state"] != "filled" and row["venue"] == "binance", (
        f"Binance entry {cid} booked from the hand-opened Bybit position: state={row['state']} venue={row['venue']} "
        f"positions={booked}; after Binance returned: binance BTC={bn_pos}, binance stops={bn_stops}, "
        f"events={h.events()}")
