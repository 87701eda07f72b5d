"""VenueBroker: order safety, rate limits, bans, venue stops and reconciliation, through the real
python-binance / pybit clients over HTTP against the fake venues (tests/fakes)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from fakes.bybit_venue import FakeBybit
from tracer.store import Store
from tracer.execution.broker import Bracket
from tracer.execution.venue_broker import VenueBroker, round_to_step, round_to_tick, stop_order_id, target_order_id
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from tracer.execution.venues.bybit import BybitFuturesClient
from tracer.models import OrderState, Side

from venue_harness import BTC, KEY, LOG, SECRET, T0, Harness, assert_no_duplicates, booked


def test_entry_fills_and_puts_reduce_only_stop_and_target_on_the_venue(h, venue):
    o = h.entry()
    assert h.state(o.client_order_id) == "submitted"
    h.settle()
    assert h.state(o.client_order_id) == "filled"
    pos = h.broker.positions()[0]
    assert pos.qty == pytest.approx(0.01) and pos.stop_loss == pytest.approx(pos.entry_price - 1000.0)
    sl, tp = stop_order_id(o.client_order_id), target_order_id(o.client_order_id)
    assert h.state(sl) == "submitted" and h.state(tp) == "submitted"
    algo = {a["clientAlgoId"]: a for a in venue.algo_orders.values()}
    assert algo[sl]["reduceOnly"] in (True, "true") or algo[sl].get("closePosition") in (True, "true")
    assert float(algo[sl]["triggerPrice"]) == pytest.approx(pos.stop_loss, abs=0.1)
    assert venue.margin_type["BTCUSDT"] == "ISOLATED" and venue.leverage["BTCUSDT"] == 5
    assert_no_duplicates(venue)


def test_stop_fills_on_the_venue_books_the_trade_and_cancels_the_target(h, venue):
    o = h.entry()
    h.settle()
    entry = h.broker.positions()[0].entry_price
    venue.set_price("BTCUSDT", entry - 1500.0)         # through the stop
    trades = h.settle(T0 + timedelta(hours=2))
    assert [t.exit_reason for t in trades] == ["stop_loss"]
    assert trades[0].exit_order_id == stop_order_id(o.client_order_id)
    assert trades[0].pnl < 0 and trades[0].fees > 0
    assert h.broker.positions() == [] and "BTCUSDT" not in venue.positions
    assert h.state(target_order_id(o.client_order_id)) == "canceled"
    live_algo = [a for a in venue.algo_orders.values() if a.get("algoStatus") in ("NEW", None)]
    assert live_algo == []                              # no orphaned stop or target left on the venue
    assert_no_duplicates(venue)


def test_liquidation_on_the_venue_is_booked_as_such(h, venue):
    h.entry(lev=20, bracket=Bracket(stop_distance=0.0, take_profit_distance=0.0, trail_pct=0.0, max_hold_s=0.0))
    h.settle()
    pos = h.broker.positions()[0]
    assert pos.liquidation_price and pos.liquidation_price < pos.entry_price
    venue.set_price("BTCUSDT", pos.liquidation_price * 0.98)
    trades = h.settle(T0 + timedelta(hours=3))
    assert [t.exit_reason for t in trades] == ["liquidation"]
    assert trades[0].pnl == pytest.approx(-(pos.margin + pos.entry_fee))
    assert "position_closed_on_venue" in h.events()


def test_quantity_rounded_down_to_the_step_and_minimums_refused_without_sending(h, venue):
    o = h.entry(qty=0.0109)
    h.settle()
    assert h.broker.positions()[0].qty == pytest.approx(0.010)
    small = h.entry(qty=0.002)                           # 84 USDT: below the 100 USDT min notional
    assert h.state(small.client_order_id) == "rejected"
    assert "below the venue minimum" in h.store.order(small.client_order_id)["state_reason"]
    assert small.client_order_id not in venue.post_counts
    assert "order_refused" in h.events()
    assert o.client_order_id in venue.post_counts


def test_lost_response_is_found_by_client_id_and_never_sent_twice(h, venue):
    venue.inject("POST /fapi/v1/order", "lost")
    o = h.entry()
    assert h.state(o.client_order_id) == "submitted"
    assert venue.post_counts[o.client_order_id] == 1
    assert "order_found_after_ambiguous" in h.events()
    h.settle()
    assert h.state(o.client_order_id) == "filled"
    assert_no_duplicates(venue)


def test_unconfirmable_order_stays_new_and_is_not_resent(h, venue):
    venue.inject("POST /fapi/v1/order", "5xx", when="after")
    venue.inject("GET /fapi/v1/order", "5xx", times=None)
    venue.inject("GET /fapi/v1/algoOrder", "5xx", times=None)
    o = h.entry()
    assert h.state(o.client_order_id) == "new"
    assert "unconfirmed" in h.store.order(o.client_order_id)["state_reason"]
    assert venue.post_counts[o.client_order_id] == 1
    venue.clear_faults()
    upd = h.broker.get(o.client_order_id)               # what the next cycle's reconcile asks
    assert upd is not None and upd.state is OrderState.SUBMITTED
    h.settle()
    assert h.state(o.client_order_id) == "filled" and venue.post_counts[o.client_order_id] == 1


def test_short_429_waits_retry_after_long_429_leaves_the_venue_alone(h, venue):
    venue.inject("POST /fapi/v1/order", 429, retry_after=2, used_weight=2399)
    o = h.entry()
    assert h.state(o.client_order_id) == "submitted" and h.slept == [2.0]
    ev = h.store.venue_events("futures", "rate_limited")[0]
    assert '"used_weight": 2399' in ev["detail_json"]
    venue.inject("POST /fapi/v1/order", 429, retry_after=600)
    o2 = h.entry(symbol="ETH/USD")                      # (one position per symbol: BTC has one)
    assert h.state(o2.client_order_id) == "new" and h.slept == [2.0]
    n = len(venue.requests)
    o3 = h.entry(symbol="ETH/USD")                      # the venue is left alone until Retry-After ends
    assert h.state(o3.client_order_id) == "new" and len(venue.requests) == n


def test_418_stops_trading_on_the_venue_and_alerts(h, venue):
    venue.inject("POST /fapi/v1/order", 418, retry_after=3600)
    o = h.entry()
    assert h.state(o.client_order_id) == "new"
    assert "ip_banned" in h.events() and any("ip banned" in a for a in h.alerts)
    n = len(venue.requests)
    h.entry()
    assert len(venue.requests) == n                      # no request during the ban


def test_timestamp_drift_resyncs_once_and_succeeds(h, venue):
    venue.clock_offset_ms = 20_000                       # venue clock 20 s ahead: every request -1021
    o = h.entry()
    assert h.state(o.client_order_id) == "submitted"
    assert "clock_resync" in h.events()
    assert_no_duplicates(venue)


def test_auth_and_margin_errors_are_not_retried_and_are_recorded(venue, tmp_path):
    bad = Harness(tmp_path, [BinanceFuturesClient(KEY, "wrong-secret", venue.url, timeout_s=0.5)])
    o = bad.entry()
    assert bad.state(o.client_order_id) == "rejected"
    assert "auth_error" in bad.events() or "order_rejected" in bad.events()
    assert bad.alerts
    assert "wrong-secret" not in " ".join(bad.alerts) + str(bad.store.order(o.client_order_id)["state_reason"])
    good = Harness(tmp_path / "g", [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)]) \
        if (tmp_path / "g").mkdir() is None else None
    venue.inject("POST /fapi/v1/order", -2019)
    o2 = good.entry()
    assert good.state(o2.client_order_id) == "rejected" and venue.post_counts[o2.client_order_id] == 1
    assert "insufficient_margin" in good.events()


def test_unknown_venue_position_is_adopted_and_orphan_stops_are_cancelled(h, venue):
    c = h.broker.venues["binance"].client
    from tracer.execution.venue import OrderSpec, VenueOrderType
    c.prepare_symbol("ETH/USD", 3)
    c.place_order(OrderSpec("manual-1", "ETH/USD", Side.BUY, 0.5))          # opened by hand on the venue
    c.place_order(OrderSpec("tb-fu-BTC-orphan-sl", BTC, Side.SELL, 0.01, VenueOrderType.STOP_MARKET, True, 30000.0))
    h.settle()
    held = {p.symbol: p for p in h.broker.positions()}
    assert "ETH/USD" in held and held["ETH/USD"].qty == pytest.approx(0.5)
    assert "position_adopted" in h.events() and "orphan_cancelled" in h.events()
    assert [a for a in venue.algo_orders.values() if a.get("algoStatus") == "NEW"] == []


def test_restart_rebuilds_from_the_db_and_agrees_with_the_venue(h, venue, tmp_path):
    o = h.entry()
    h.settle()
    # a new broker, as after a crash: restored from the DB, then synced
    b2 = VenueBroker("futures", [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], h.store, LOG,
                     futures=True, backoff_s=0.0, sleep=lambda s: None)
    from tracer.store import row_to_order
    pending = [(row_to_order(r), None) for r in h.store.orders_in_state("futures", OrderState.SUBMITTED)]
    b2.restore(h.store.open_positions("futures"), pending, 0.0, 0.0, {})
    assert b2.ensure_protection() == []                  # its stop and target are already there
    rep = b2.sync(T0 + timedelta(hours=1))
    assert rep.fills == [] and rep.trades == [] and rep.exit_orders == []
    assert [p.symbol for p in b2.positions()] == [BTC]
    assert_no_duplicates(venue)
    assert o.client_order_id in booked(venue)


def test_failover_to_bybit_when_binance_is_down(venue, tmp_path):
    with FakeBybit(KEY, SECRET) as by:
        h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5),
                               BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5)])
        venue.down()
        o = h.entry()
        assert h.state(o.client_order_id) == "new"               # binance refused the connection
        assert "venue_down" in h.events()
        o2 = h.entry()                                           # the next entry goes to the backup
        assert h.state(o2.client_order_id) == "submitted"
        assert h.store.order(o2.client_order_id)["venue"] == "bybit"
        h.settle()
        assert [p.symbol for p in h.broker.positions()] == [BTC]
        assert by.post_counts[o2.client_order_id] == 1
        assert "failover" in h.events() and any("new entries go to bybit" in a for a in h.alerts)


def test_decimal_rounding_helpers():
    assert round_to_step(0.30000000000000004, 0.001) == 0.3
    assert round_to_step(1.23456, 0.01) == 1.23 and round_to_step(7, 1) == 7
    assert round_to_tick(41000.04, 0.1, side_up=True) == 41000.1
    assert round_to_tick(41000.06, 0.1, side_up=False) == 41000.0


def test_spot_on_alpaca_stops_are_the_agents_and_exit_with_a_market_order(tmp_path):
    from fakes.alpaca_trading import FakeAlpacaTrading
    from tracer.execution.venues.alpaca import AlpacaSpotClient
    from tracer.models import Bar
    with FakeAlpacaTrading((KEY, SECRET)) as al:
        al.set_price(BTC, 42000.0)
        store = Store(tmp_path / "spot.sqlite")
        h = Harness.__new__(Harness)
        h.store, h.slept, h.alerts, h.n = store, [], [], 0
        h.broker = VenueBroker("hybrid", [AlpacaSpotClient(KEY, SECRET, al.url, timeout_s=0.5)], store, LOG,
                               futures=False, backoff_s=0.0, sleep=h.slept.append, alert=h.alerts.append)
        h.broker.last_price[BTC] = 42000.0
        o = h.entry(lev=1)
        h.settle()
        pos = h.broker.positions()[0]
        assert pos.qty < 0.01                        # the fee was taken in BTC: the position is what is held
        assert h.broker.take_outbox() == []          # no venue stop on Alpaca: the agent watches the bars
        rep = h.broker.on_bar(Bar(BTC, T0 + timedelta(hours=2), 41500.0, 41600.0, 40500.0, 40800.0, 10.0))
        assert [x.reason for x in rep.exit_orders] == ["stop_loss"]
        with store.transaction():
            store.insert_order(rep.exit_orders[0], run_id=None, signal_id=None, price_est=None)
        al.set_price(BTC, 40800.0)
        trades = h.settle(T0 + timedelta(hours=3))
        assert [t.exit_reason for t in trades] == ["stop_loss"] and trades[0].exit_price == pytest.approx(40800.0)
        assert h.broker.positions() == [] and al.post_counts[o.client_order_id] == 1


def test_explain_shows_the_venue_and_its_events(h, venue):
    import io
    from rich.console import Console
    from tracer.cli import explain
    venue.inject("POST /fapi/v1/order", "lost")
    o = h.entry()
    h.settle()
    buf = io.StringIO()
    assert explain(h.store, Console(file=buf, width=250), o.client_order_id) == 0
    out = buf.getvalue()
    assert "binance (venue order id" in out and "order_found_after_ambiguous" in out and "filled" in out


def test_partial_fill_books_what_filled_and_protects_exactly_that(h, venue):
    venue.inject("POST /fapi/v1/order", "partial", fraction=0.5)
    o = h.entry(qty=0.02)
    h.settle()
    pos = h.broker.positions()[0]
    assert pos.qty == pytest.approx(0.01)
    row = h.store.order(o.client_order_id)
    assert row["state"] == "filled" and row["filled_qty"] == pytest.approx(0.01)
    algo = {a["clientAlgoId"]: a for a in venue.algo_orders.values()}
    assert float(algo[stop_order_id(o.client_order_id)]["quantity"]) == pytest.approx(0.01)
    assert abs(float(venue.positions["BTCUSDT"]["amt"])) == pytest.approx(0.01)


def test_equity_keeps_a_banned_venues_last_balance_across_a_restart(venue, tmp_path):
    """The daily loss stop compares equities: a venue that is unreachable after a restart must still count."""
    with FakeBybit(KEY, SECRET) as by:
        clients = lambda: [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5),  # noqa: E731
                           BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5)]
        h = Harness(tmp_path, clients())
        h.settle()
        both = h.broker.equity()
        assert both == pytest.approx(20_000.0, rel=1e-6)          # both wallets, from the first cycle on
        venue.down()
        b2 = VenueBroker("futures", clients(), h.store, LOG, futures=True, backoff_s=0.0, sleep=lambda s: None)
        b2.restore([], [], 0.0, 0.0, {})
        b2.sync(T0)
        assert b2.equity() == pytest.approx(both)


def test_an_order_id_belongs_to_the_position_of_its_entry_only():
    from tracer.execution.broker import exit_order_id
    from tracer.execution.venue_broker.ids import of_position
    a, b = "tb-hy-BTC-2206060000-e-be8c14", "tb-hy-BTC-2206060200-e-0a11f3"
    long_id = "tb-fu-AVAXUSDT-2206060000-e-0123456789"          # cut to fit the 36 characters
    for e in (a, long_id):
        ids = [exit_order_id(e, k) for k in range(4)] + [stop_order_id(e, k) for k in range(3)] + \
              [target_order_id(e, k) for k in range(3)]
        assert all(of_position(i, e) for i in ids), ids
        assert not any(of_position(i, b) for i in ids)
    assert not of_position(a, a) and not of_position(a + "-y", a) and not of_position("x", a)


def test_the_agents_stop_request_ends_the_brokers_own_waits(tmp_path):
    """A market exit may wait up to TB_VENUE_EXIT_MAX_WAIT_S for a 429's window: longer than the grace a stop
    gives the agent before SIGKILL. The agent's stop request (its SIGTERM handler sets it) ends that wait."""
    import threading
    import time
    broker = VenueBroker("futures", [BinanceFuturesClient(KEY, SECRET, "http://127.0.0.1:9", timeout_s=0.5)],
                         Store(tmp_path / "tb.sqlite"), LOG, futures=True)
    stop = threading.Event()
    broker.bind_stop(stop)
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    broker.sleep(30.0)
    assert time.monotonic() - t0 < 5
