"""BinanceFuturesClient through the real python-binance Client over HTTP, against FakeBinanceFutures."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl

import pytest

from fakes.binance_futures_venue import FakeBinanceFutures
from procs import refused_port
from tracer.execution.venue import (Ambiguous, AuthError, DuplicateClientId, InsufficientMargin, IpBanned,
                                    OrderRejected, OrderSpec, RateLimited, TimestampDrift, VenueError, VenueOrderType,
                                    VenueUnavailable)
from tracer.execution.venues.binance_errors import WeightThrottle, translate_api_error, translate_request_error
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from tracer.execution.venues.fields import format_step
from tracer.models import OrderState, PositionSide, Side

KEY, SECRET = "test-key-abc", "test-secret-xyz-0123456789"
BTC = "BTC/USD"


@pytest.fixture
def venue():
    with FakeBinanceFutures(KEY, SECRET) as v:
        yield v


@pytest.fixture
def client(venue):
    return BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.3)


def market(cid: str, side: Side, qty: float, symbol: str = BTC, reduce_only: bool = False) -> OrderSpec:
    return OrderSpec(client_order_id=cid, symbol=symbol, side=side, qty=qty, reduce_only=reduce_only)


def stop(cid: str, side: Side, qty: float, price: float, typ=VenueOrderType.STOP_MARKET,
         symbol: str = BTC) -> OrderSpec:
    return OrderSpec(client_order_id=cid, symbol=symbol, side=side, qty=qty, type=typ, reduce_only=True,
                     stop_price=price)


def sent(venue, method: str, path: str) -> list[dict[str, str]]:
    """The parameters of every request the venue received for ``method path``."""
    out = []
    for r in venue.requests:
        if r.method == method and r.path == path:
            p = dict(parse_qsl(r.raw_query))
            p.update(parse_qsl(r.body.decode()))
            out.append(p)
    return out


# --- identity, rules, formatting -----------------------------------------------------------------------
def test_identity_and_no_network_in_constructor(venue):
    c = BinanceFuturesClient(KEY, SECRET, venue.url + "/", timeout_s=0.3)
    assert (c.name, c.base_url, c.is_test_venue, c.supports_venue_stops) == ("binance", venue.url, True, True)
    assert venue.requests == []                                # ping=False: nothing sent yet
    assert SECRET not in repr(c) and KEY not in repr(c)
    live = BinanceFuturesClient(KEY, SECRET, "https://fapi.binance.com")
    assert live.is_test_venue is False
    assert BinanceFuturesClient(KEY, SECRET, "https://testnet.binancefuture.com").is_test_venue is True
    assert BinanceFuturesClient(KEY, SECRET, venue.url + "/fapi").rules(BTC).tick_size == 0.1


def test_rules_parsed_from_exchange_info_and_cached(client, venue):
    r = client.rules(BTC)
    assert (r.tick_size, r.step_size, r.min_qty, r.min_notional) == (0.1, 0.001, 0.001, 100.0)
    e = client.rules("ETH/USD")
    assert (e.tick_size, e.step_size, e.min_qty, e.min_notional) == (0.01, 0.001, 0.001, 20.0)
    s = client.rules("SOL/USD")
    assert (s.tick_size, s.step_size, s.min_qty, s.min_notional) == (0.01, 1.0, 1.0, 5.0)
    assert len(sent(venue, "GET", "/fapi/v1/exchangeInfo")) == 1
    with pytest.raises(OrderRejected):
        client.rules("NOPE/USD")


def test_format_step_is_exact():
    assert format_step(0.1 + 0.2, 0.001) == "0.3"
    assert format_step(0.0019, 0.001) == "0.001"               # quantities never round up
    assert format_step(2.9999999999999996, 1) == "3"
    assert format_step(1e-7, 0.001) == "0"
    assert format_step(41999.97, 0.1, mode="nearest") == "42000"
    assert format_step(41000.04, 0.1, mode="nearest") == "41000"
    assert format_step(2500.123, 0.01, mode="nearest") == "2500.12"
    assert format_step(0.07, 0.01) == "0.07"


def test_quantity_sent_as_exact_decimal_string(client, venue):
    o = client.place_order(market("tb-q-1", Side.BUY, 0.1 + 0.2))
    assert sent(venue, "POST", "/fapi/v1/order")[0]["quantity"] == "0.3"
    assert o.filled_qty == 0.3 and o.qty == 0.3
    client.place_order(market("tb-q-2", Side.BUY, 7.999999999999999, symbol="SOL/USD"))
    assert sent(venue, "POST", "/fapi/v1/order")[1]["quantity"] == "8"
    with pytest.raises(OrderRejected):
        client.place_order(market("tb-q-3", Side.BUY, 0.0004))       # below one step: never sent
    assert "tb-q-3" not in venue.post_counts


# --- orders ------------------------------------------------------------------------------------------------
def test_market_round_trip(client, venue):
    client.prepare_symbol(BTC, 5)
    assert venue.margin_type["BTCUSDT"] == "ISOLATED" and venue.leverage["BTCUSDT"] == 5
    # switched by hand in the app between two entries: asked of the venue again every time, never cached
    venue.leverage["BTCUSDT"], venue.margin_type["BTCUSDT"] = 20, "CROSSED"
    client.prepare_symbol(BTC, 5)
    assert venue.margin_type["BTCUSDT"] == "ISOLATED" and venue.leverage["BTCUSDT"] == 5
    client.prepare_symbol(BTC, 5)                               # idempotent: -4046 on the margin type is fine
    venue.hedge_mode = True                                     # switched by hand while flat
    with pytest.raises(OrderRejected, match="hedge mode"):
        client.prepare_symbol(BTC, 5)
    venue.hedge_mode = False
    venue.margin_type["ETHUSDT"] = "ISOLATED"                   # -4046 "No need to change margin type" is fine
    client.prepare_symbol("ETH/USD", 3)
    assert venue.leverage["ETHUSDT"] == 3

    o = client.place_order(market("tb-rt-e", Side.BUY, 0.01))
    assert o.state == OrderState.FILLED and o.filled_qty == 0.01 and o.avg_price == 42000.0
    assert o.client_order_id == "tb-rt-e" and o.type == VenueOrderType.MARKET and o.venue_order_id
    p = sent(venue, "POST", "/fapi/v1/order")[0]
    assert p["newClientOrderId"] == "tb-rt-e" and "reduceOnly" not in p and p["type"] == "MARKET"

    g = client.get_order(BTC, "tb-rt-e")
    assert g is not None and g.state == OrderState.FILLED and g.filled_qty == 0.01 and g.avg_price == 42000.0
    assert client.get_order(BTC, "tb-never-sent") is None

    [pos] = client.positions()
    assert (pos.symbol, pos.side, pos.qty, pos.entry_price) == (BTC, PositionSide.LONG, 0.01, 42000.0)
    assert pos.leverage == 5.0
    assert pos.margin == pytest.approx(84.0) and pos.mark_price == 42000.0
    assert pos.liquidation_price == pytest.approx(venue.liquidation_price("BTCUSDT"))
    assert 33000 < pos.liquidation_price < 34000

    fee = 0.01 * 42000 * 0.0004
    b = client.balance()
    assert b.wallet == pytest.approx(10_000 - fee) and b.available == pytest.approx(10_000 - fee - 84)
    venue.set_price("BTCUSDT", 43000.0)
    b = client.balance()
    assert b.equity == pytest.approx(10_000 - fee + 10.0)
    assert client.positions()[0].unrealized_pnl == pytest.approx(10.0)

    x = client.place_order(market("tb-rt-x", Side.SELL, 0.01, reduce_only=True))
    assert x.state == OrderState.FILLED and x.reduce_only
    assert sent(venue, "POST", "/fapi/v1/order")[1]["reduceOnly"] == "true"
    assert client.positions() == []
    [f] = client.fills(BTC, "tb-rt-x")
    assert (f.client_order_id, f.side, f.qty, f.price) == ("tb-rt-x", Side.SELL, 0.01, 43000.0)
    assert f.realized_pnl == pytest.approx(10.0) and f.fee == pytest.approx(0.01 * 43000 * 0.0004)
    assert f.ts.tzinfo is not None and f.trade_id
    [f0] = client.fills(BTC, "tb-rt-e")
    assert f0.fee == pytest.approx(fee) and f0.realized_pnl == 0.0
    assert client.fills(BTC, "tb-never-sent") == []
    assert venue.post_counts == {"tb-rt-e": 1, "tb-rt-x": 1}


def test_reduce_only_without_position_is_rejected(client):
    with pytest.raises(OrderRejected) as e:
        client.place_order(market("tb-ro-1", Side.SELL, 0.01, reduce_only=True))
    assert e.value.code == -2022 and e.value.status == 400 and "ReduceOnly" in str(e.value)


def test_protective_stop_is_an_algo_order_found_and_cancelled(client, venue):
    client.place_order(market("tb-st-e", Side.BUY, 0.01))
    s = client.place_order(stop("tb-st-s", Side.SELL, 0.01, 41000.04))
    assert s.state == OrderState.SUBMITTED and s.type == VenueOrderType.STOP_MARKET and s.stop_price == 41000.0
    assert s.reduce_only and s.client_order_id == "tb-st-s" and s.filled_qty == 0.0
    [p] = sent(venue, "POST", "/fapi/v1/algoOrder")
    assert p["clientAlgoId"] == "tb-st-s" and p["algoType"] == "CONDITIONAL" and p["type"] == "STOP_MARKET"
    assert p["triggerPrice"] == "41000" and p["workingType"] == "MARK_PRICE" and p["reduceOnly"] == "true"
    assert "newClientOrderId" not in p and "stopPrice" not in p

    g = client.get_order(BTC, "tb-st-s")
    assert g is not None and g.state == OrderState.SUBMITTED and g.type == VenueOrderType.STOP_MARKET
    assert [o.client_order_id for o in client.open_orders()] == ["tb-st-s"]
    assert [o.client_order_id for o in client.open_orders(BTC)] == ["tb-st-s"]
    assert client.open_orders("ETH/USD") == []

    c = client.cancel_order(BTC, "tb-st-s")
    assert c is not None and c.state == OrderState.CANCELED
    assert client.get_order(BTC, "tb-st-s").state == OrderState.CANCELED
    assert client.cancel_order(BTC, "tb-st-s") is None          # already gone
    assert client.cancel_order(BTC, "tb-nothing") is None
    assert client.open_orders() == []
    venue.set_price("BTCUSDT", 40500.0)                          # a cancelled stop never fires (liq ~40060)
    assert client.positions()[0].qty == 0.01


def test_stop_triggered_by_price_closes_position(client, venue):
    client.place_order(market("tb-tr-e", Side.BUY, 0.01))
    client.place_order(stop("tb-tr-s", Side.SELL, 0.01, 41000.0))
    client.place_order(stop("tb-tr-t", Side.SELL, 0.01, 45000.0, typ=VenueOrderType.TAKE_PROFIT_MARKET))
    venue.set_price("BTCUSDT", 41500.0)
    assert client.get_order(BTC, "tb-tr-s").state == OrderState.SUBMITTED
    venue.set_price("BTCUSDT", 40900.0)
    g = client.get_order(BTC, "tb-tr-s")
    assert g.state == OrderState.FILLED and g.filled_qty == 0.01 and g.avg_price == 40900.0
    assert client.positions() == []
    [f] = client.fills(BTC, "tb-tr-s")
    assert f.qty == 0.01 and f.price == 40900.0 and f.realized_pnl == pytest.approx(-11.0)
    venue.set_price("BTCUSDT", 46000.0)                          # the take-profit has nothing left to reduce
    t = client.get_order(BTC, "tb-tr-t")
    assert t.state == OrderState.CANCELED and t.filled_qty == 0.0 and "expired" in t.reason
    assert client.open_orders() == []


def test_take_profit_on_a_short(client, venue):
    client.place_order(market("tb-sh-e", Side.SELL, 0.1, symbol="ETH/USD"))
    [pos] = client.positions()
    assert pos.side == PositionSide.SHORT and pos.symbol == "ETH/USD"
    client.place_order(stop("tb-sh-t", Side.BUY, 0.1, 2400.0, typ=VenueOrderType.TAKE_PROFIT_MARKET, symbol="ETH/USD"))
    venue.set_price("ETHUSDT", 2399.5)
    t = client.get_order("ETH/USD", "tb-sh-t")
    assert t.state == OrderState.FILLED and t.type == VenueOrderType.TAKE_PROFIT_MARKET
    assert client.fills("ETH/USD", "tb-sh-t")[0].realized_pnl == pytest.approx(10.05)


def test_stop_that_would_trigger_immediately_is_rejected(client):
    client.place_order(market("tb-im-e", Side.BUY, 0.01))
    with pytest.raises(OrderRejected) as e:
        client.place_order(stop("tb-im-s", Side.SELL, 0.01, 42100.0))
    assert e.value.code == -2021


def test_liquidation_closes_position_and_loses_margin(client, venue):
    client.prepare_symbol(BTC, 20)
    client.place_order(market("tb-lq-e", Side.BUY, 0.01))
    liq = client.positions()[0].liquidation_price
    wallet = client.balance().wallet
    venue.set_price("BTCUSDT", liq - 50)
    assert client.positions() == []
    assert client.balance().wallet == pytest.approx(wallet - 0.01 * 42000 / 20)


def test_funding_sign_we_paid_positive(client, venue):
    since = datetime.now(timezone.utc) - timedelta(seconds=5)
    client.place_order(market("tb-fu-e", Side.BUY, 0.01))
    venue.apply_funding("BTCUSDT", 0.0001)
    client.place_order(market("tb-fu-s", Side.SELL, 1, symbol="SOL/USD"))
    venue.apply_funding("SOLUSDT", 0.0001)
    [p] = client.funding(BTC, since)
    assert p.symbol == BTC and p.amount == pytest.approx(0.042) and p.ts.tzinfo is not None
    [q] = client.funding("SOL/USD", since)
    assert q.amount == pytest.approx(-0.01)                     # the short received
    assert client.funding("ETH/USD", since) == []
    assert client.funding(BTC, datetime.now(timezone.utc) + timedelta(hours=1)) == []


def test_fee_charged_in_bnb_is_converted_to_usdt(client, venue):
    venue.fee_asset = "BNB"
    venue.set_price("BNBUSDT", 600.0)
    client.place_order(market("tb-bnb", Side.BUY, 0.01))
    [f] = client.fills(BTC, "tb-bnb")
    assert f.fee == pytest.approx(0.168)


def test_partial_fill(client, venue):
    venue.inject("POST /fapi/v1/order", "partial", fraction=0.5)
    o = client.place_order(market("tb-pf", Side.BUY, 0.011))
    assert o.filled_qty == 0.005 and o.qty == 0.011 and o.state == OrderState.CANCELED
    assert "partial" in o.reason
    assert client.positions()[0].qty == 0.005


# --- time -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("venue_ahead_ms", [30_000, -30_000])
def test_sync_time_fixes_timestamp_drift(client, venue, venue_ahead_ms):
    venue.clock_offset_ms = venue_ahead_ms
    with pytest.raises(TimestampDrift) as e:
        client.balance()
    assert e.value.code == -1021
    off = client.sync_time()
    assert off == pytest.approx(venue_ahead_ms, abs=500)
    assert client.balance().wallet == 10_000.0
    assert abs((client.server_time() - datetime.now(timezone.utc)).total_seconds() * 1000 - venue_ahead_ms) < 1000


def test_injected_clock_is_what_signed_requests_use(venue):
    c = BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.3, clock=lambda: time.time() - 120)
    with pytest.raises(TimestampDrift):
        c.positions()
    assert c.sync_time() == pytest.approx(120_000, abs=500)
    assert c.positions() == []


def test_recv_window_is_sent(client, venue):
    client.balance()
    assert sent(venue, "GET", "/fapi/v2/account")[0]["recvWindow"] == "5000"


# --- auth -------------------------------------------------------------------------------------------------
def test_bad_secret_is_auth_error_signature_really_checked(venue):
    c = BinanceFuturesClient(KEY, "wrong-secret-123", venue.url, timeout_s=5.0)   # not a timeout test: a busy machine is slow
    with pytest.raises(AuthError) as e:
        c.balance()
    assert e.value.code == -1022 and e.value.status == 400
    assert "wrong-secret-123" not in str(e.value) and KEY not in str(e.value)
    with pytest.raises(AuthError):
        c.place_order(market("tb-au-1", Side.BUY, 0.01))
    assert venue.orders_by_client_id == {}
    assert c.rules(BTC).step_size == 0.001                      # public endpoints need no signature


def test_bad_key_is_auth_error(venue):
    c = BinanceFuturesClient("other-key", SECRET, venue.url, timeout_s=5.0)
    with pytest.raises(AuthError) as e:
        c.positions()
    assert e.value.code == -2015 and e.value.status == 401
    assert SECRET not in str(e.value)


# --- faults ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault,kw,status", [
    ("timeout", {"seconds": 0.8}, None),
    ("5xx", {"status": 503}, 503),
    ("5xx", {"status": 502}, 502),
    (-1001, {}, 503),
    (-1007, {}, 408),
    ("drop", {}, None),
])
def test_read_faults_are_ambiguous(client, venue, fault, kw, status):
    venue.inject("GET /fapi/v2/positionRisk", fault, **kw)
    with pytest.raises(Ambiguous) as e:
        client.positions()
    assert e.value.status == status
    assert client.positions() == []                              # the fault was one-off


@pytest.mark.parametrize("fault,kw", [("lost", {}), ("lost", {"mode": "503"}), ("timeout", {"seconds": 0.8}),
                                      ("5xx", {"when": "after"})])
def test_order_accepted_but_response_lost_is_ambiguous_and_on_the_venue(client, venue, fault, kw):
    venue.inject("POST /fapi/v1/order", fault, **kw)
    with pytest.raises(Ambiguous):
        client.place_order(market("tb-lost-1", Side.BUY, 0.01))
    g = client.get_order(BTC, "tb-lost-1")                      # query before resubmit: it is there
    assert g is not None and g.state == OrderState.FILLED and g.filled_qty == 0.01
    assert venue.post_counts["tb-lost-1"] == 1
    assert client.positions()[0].qty == 0.01                    # only one order booked
    # Binance dedupes client ids among *open* orders only: a filled order's id is accepted again, so a blind
    # resubmit would book a second order; only the query first (and the DB's one send per id) prevents it
    again = client.place_order(market("tb-lost-1", Side.BUY, 0.01))
    assert again.state == OrderState.FILLED and client.positions()[0].qty == pytest.approx(0.02)


def test_lost_algo_order_found_by_client_id(client, venue):
    client.place_order(market("tb-la-e", Side.BUY, 0.01))
    venue.inject("POST /fapi/v1/algoOrder", "lost")
    with pytest.raises(Ambiguous):
        client.place_order(stop("tb-la-s", Side.SELL, 0.01, 40000.0))
    g = client.get_order(BTC, "tb-la-s")
    assert g is not None and g.state == OrderState.SUBMITTED and g.type == VenueOrderType.STOP_MARKET
    assert client.get_order(BTC, "tb-la-s", conditional=True) == g
    assert client.get_order(BTC, "tb-la-s", conditional=False) is None     # not a regular order
    with pytest.raises(DuplicateClientId) as e:                 # open: its id is refused while it rests
        client.place_order(stop("tb-la-s", Side.SELL, 0.01, 40000.0))
    assert e.value.code == -4116


@pytest.mark.parametrize("fault,kw", [("5xx", {}), ("timeout", {"when": "before", "seconds": 0.6}), ("drop", {})])
def test_fault_before_processing_leaves_nothing(client, venue, fault, kw):
    venue.inject("POST /fapi/v1/order", fault, **kw)
    with pytest.raises(Ambiguous):
        client.place_order(market("tb-nb-1", Side.BUY, 0.01))
    assert client.get_order(BTC, "tb-nb-1") is None
    assert client.place_order(market("tb-nb-1", Side.BUY, 0.01)).state == OrderState.FILLED


def test_rate_limited(client, venue):
    venue.inject("GET /fapi/v2/account", 429, retry_after=7, used_weight=2401)
    with pytest.raises(RateLimited) as e:
        client.balance()
    assert e.value.retry_after_s == 7.0 and e.value.used_weight == 2401 and e.value.status == 429


def test_ip_banned_until_from_message_or_retry_after(client, venue):
    until_ms = int(time.time() * 1000) + 600_000
    venue.inject("*", 418, until_ms=until_ms)
    with pytest.raises(IpBanned) as e:
        client.balance()
    assert e.value.until == datetime.fromtimestamp(until_ms / 1000, tz=timezone.utc) and e.value.status == 418
    venue.inject("*", 418, retry_after=300, until_ms=int(time.time() * 1000) + 60_000)
    with pytest.raises(IpBanned) as e:
        client.server_time()
    left = (e.value.until - datetime.now(timezone.utc)).total_seconds()
    assert 290 < left <= 300                                     # the later of the two


@pytest.mark.parametrize("code,exc", [(-1111, OrderRejected), (-4164, OrderRejected), (-2019, InsufficientMargin),
                                      (-2018, InsufficientMargin), (-1121, OrderRejected), (-4116, DuplicateClientId),
                                      (-1021, TimestampDrift), (-2014, AuthError), (-2015, AuthError)])
def test_venue_codes_map_to_typed_errors(client, venue, code, exc):
    venue.inject("POST /fapi/v1/order", code)
    with pytest.raises(exc) as e:
        client.place_order(market("tb-code", Side.BUY, 0.01))
    assert e.value.code == code and e.value.status in (400, 401)
    assert "tb-code" not in venue.orders_by_client_id


def test_real_rejects_from_the_venue(client, venue):
    with pytest.raises(OrderRejected) as e:                     # 0.001 BTC * 42000 < 100 USDT
        client.place_order(market("tb-mn", Side.BUY, 0.001))
    assert e.value.code == -4164 and "notional" in str(e.value)
    with pytest.raises(InsufficientMargin) as m:                # 10 BTC at 20x needs 21000 USDT of margin
        client.place_order(market("tb-im", Side.BUY, 10))
    assert m.value.code == -2019
    with pytest.raises(OrderRejected) as u:
        client.place_order(market("tb-uk", Side.BUY, 1, symbol="NOPE/USD"))
    assert u.value.code == -1121
    assert set(venue.orders_by_client_id) == set()
    assert client.place_order(market("tb-ok", Side.BUY, 0.01)).state == OrderState.FILLED


def test_venue_down_is_unavailable_then_back(client, venue):
    client.rules(BTC)
    venue.down()
    with pytest.raises(VenueUnavailable):
        client.balance()
    with pytest.raises(VenueUnavailable):
        client.place_order(market("tb-dn", Side.BUY, 0.01))
    assert "tb-dn" not in venue.post_counts
    venue.up()
    assert client.balance().wallet == 10_000.0
    assert client.place_order(market("tb-dn", Side.BUY, 0.01)).state == OrderState.FILLED


def test_non_json_error_body_and_unknown_status_are_typed(client, venue):
    venue.inject("GET /fapi/v2/account", "5xx", status=400, body="<html>bad request</html>")
    with pytest.raises(OrderRejected) as e:
        client.balance()
    assert e.value.status == 400
    venue.inject("GET /fapi/v2/account", "5xx", status=403, body="<html>WAF</html>")
    with pytest.raises(VenueUnavailable):
        client.balance()


def test_only_typed_errors_escape():
    with refused_port() as port:                                # a port nothing listens on
        c = BinanceFuturesClient(KEY, SECRET, f"http://127.0.0.1:{port}", timeout_s=0.3)
        for call in (c.server_time, c.sync_time, c.positions, c.balance, c.open_orders, lambda: c.rules(BTC),
                     lambda: c.get_order(BTC, "x"), lambda: c.cancel_order(BTC, "x"), lambda: c.fills(BTC, "x"),
                     lambda: c.funding(BTC, datetime.now(timezone.utc)), lambda: c.prepare_symbol(BTC, 3)):
            with pytest.raises(VenueError):
                call()


def test_fake_serves_klines_to_the_data_source(venue):
    from tracer.data.sources.binance import BinanceSource

    src = BinanceSource("usdm", base_url=venue.url, timeout_s=1.0)
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    df = src.fetch(BTC, timedelta(hours=1), end - timedelta(hours=6), end)
    assert len(df) >= 5


def _response(status: int, body: bytes, headers: dict[str, str] | None = None):
    import requests

    r = requests.Response()
    r.status_code, r._content = status, body
    r.headers.update(headers or {})
    return r


def test_translation_of_errors_not_reachable_on_a_local_socket():
    import requests
    from binance.exceptions import BinanceAPIException
    from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

    timeout = requests.exceptions.ConnectTimeout(MaxRetryError(None, "/x", ConnectTimeoutError()))
    t = translate_request_error(timeout, "w")
    assert isinstance(t, VenueUnavailable)
    assert isinstance(translate_request_error(requests.exceptions.SSLError("handshake"), "w"), VenueUnavailable)
    assert isinstance(translate_request_error(requests.exceptions.ChunkedEncodingError("cut"), "w"), Ambiguous)
    r = _response(429, b'{"code": -1003, "msg": "Too many requests"}')            # no Retry-After: 60 s
    e = translate_api_error(BinanceAPIException(r, 429, r.text), "w")
    assert isinstance(e, RateLimited) and e.retry_after_s == 60.0 and e.used_weight is None
    r = _response(400, b'{"code": -1015, "msg": "Too many new orders."}')
    assert isinstance(translate_api_error(BinanceAPIException(r, 400, r.text), "w"), RateLimited)
    r = _response(418, b"<html>banned</html>")                                  # no time anywhere: 2 minutes
    e = translate_api_error(BinanceAPIException(r, 418, r.text), "w")
    assert isinstance(e, IpBanned) and 100 < (e.until - datetime.now(timezone.utc)).total_seconds() <= 120
    r = _response(401, b'{"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}')
    assert isinstance(translate_api_error(BinanceAPIException(r, 401, r.text), "w"), AuthError)


def test_datetime_clock_is_accepted(venue):
    c = BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.3, clock=lambda: datetime.now(timezone.utc))
    assert c.balance().wallet == 10_000.0
    assert abs(c.sync_time()) < 500


# --- request weight ------------------------------------------------------------------------------------
def test_weight_limit_comes_from_exchange_info(client):
    assert client.throttle.limit == 2400
    client.throttle.limit = 1
    client.rules(BTC)
    assert client.throttle.limit == 2400                         # REQUEST_WEIGHT / 1 MINUTE of rateLimits


def clocked_client(venue) -> tuple[BinanceFuturesClient, list[float], list[float]]:
    """A client on a fake clock 10 s into a minute, whose throttle's waits advance that clock."""
    now = [1_699_999_990.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    return BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5, clock=lambda: now[0],
                                throttle=WeightThrottle(sleep=sleep)), now, waits


def test_requests_wait_for_the_next_minute_near_the_weight_limit(venue):
    """The venue's X-MBX-USED-WEIGHT-1M at 90% of the limit or more: the next request waits for the next
    venue minute (on the client's clock plus the venue offset), once; under it, nothing waits."""
    c, now, waits = clocked_client(venue)                       # 10 s into a minute
    venue.used_weight = 2159                                      # just under 90% of 2,400
    c.server_time()
    c.server_time()
    assert waits == [] and c.throttle.used == 2159
    venue.used_weight = 2160
    c.server_time()                                                   # answered: 2,160 used this minute
    assert waits == []
    venue.used_weight = 40                                        # the venue's new minute
    n = len(venue.requests)
    c.server_time()
    assert len(waits) == 1 and 49.5 < waits[0] < 51.0            # to the next minute (+0.25 s margin)
    assert len(venue.requests) == n + 1                          # then sent, once
    c.server_time()
    assert len(waits) == 1 and c.throttle.used == 40 and c.throttle.waits == 1
    venue.used_weight = 2300
    c.server_time()
    now[0] += 60                                                  # the minute passed on its own: no wait
    c.server_time()
    assert len(waits) == 1


def test_rate_limit_answers_do_not_feed_the_throttle(venue):
    waits: list[float] = []
    c = BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5, throttle=WeightThrottle(sleep=waits.append))
    venue.inject("GET /fapi/v2/account", 429, retry_after=7, used_weight=2401)
    with pytest.raises(RateLimited):
        c.balance()
    c.balance()                                                   # the 429's wait is the caller's (Retry-After)
    assert waits == [] and c.throttle.used == 12


def test_error_answers_count_and_in_the_minute_they_were_sent(venue):
    c, now, waits = clocked_client(venue)
    venue.used_weight = 2300
    venue.inject("GET /fapi/v1/time", -1111)                   # an error answer carries the header too
    with pytest.raises(VenueError):
        c.server_time()
    c.server_time()
    assert len(waits) == 1
    t = WeightThrottle(sleep=lambda s: pytest.fail("no wait expected"))
    t.after_response("2300", 119.99)                              # sent at the end of minute 1 ...
    t.before_request(120.04)                                      # ... answered in minute 2: not this minute's


@pytest.mark.parametrize("rate_limits,expected", [
    ([{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}], 6000),
    ([{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 2, "limit": 6000}], 3000),
    ([{"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200}], 2400),
    ([{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": "x"}], 2400),
    ([{"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 1, "limit": 50}], 2400),
    ("garbage", 2400), (None, 2400), ([None, 3], 2400),
])
def test_weight_limit_parsing(rate_limits, expected):
    t = WeightThrottle()
    t.set_limit(rate_limits)
    assert t.limit == expected


def test_unreadable_weight_header_changes_nothing():
    t = WeightThrottle(sleep=lambda s: pytest.fail("no wait expected"))
    t.after_response("2300", 120.0)
    for bad in (None, "", "abc", "nan", "-5"):
        t.after_response(bad, 121.0)
    assert t.used == 2300
    t.before_request(181.0)                                       # a later minute: no wait


@pytest.mark.parametrize("code", [-4015, -2022])
def test_bad_client_id_and_reduce_only_refusal_are_not_duplicates(client, venue, code):
    """-4015 (malformed id) and -2022 (reduce-only refused) are refusals: never read as "the order exists"."""
    venue.inject("POST /fapi/v1/order", code)
    with pytest.raises(OrderRejected) as e:
        client.place_order(market("tb-nd", Side.BUY, 0.01))
    assert e.value.code == code and not isinstance(e.value, DuplicateClientId)


def test_late_processed_post_resent_is_a_duplicate_client_id(client, venue):
    """The first POST was booked but its answer lost; the same id sent again while the order rests is -4116."""
    client.place_order(market("tb-dup-e", Side.BUY, 0.01))
    venue.inject("POST /fapi/v1/algoOrder", "lost")
    with pytest.raises(Ambiguous):
        client.place_order(stop("tb-dup-s", Side.SELL, 0.01, 40000.0))
    with pytest.raises(DuplicateClientId) as e:
        client.place_order(stop("tb-dup-s", Side.SELL, 0.01, 40000.0))
    assert e.value.code == -4116 and e.value.status == 400 and "duplicated" in str(e.value).lower()
    assert client.get_order(BTC, "tb-dup-s").state == OrderState.SUBMITTED
