"""AlpacaSpotClient through the real alpaca-py TradingClient, over real HTTP, against FakeAlpacaTrading.

Round trips, rules, account reads, and every fault mapped to venue.py's typed errors -- above all
that an order POST is sent exactly once whatever happens (alpaca-py would retry 429/504 by itself).
"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from fakes.alpaca_trading import FakeAlpacaTrading
from procs import refused_port
from tracer.execution.venue import (Ambiguous, AuthError, DuplicateClientId, InsufficientMargin, OrderRejected,
                                    OrderSpec, RateLimited, VenueClient, VenueError, VenueOrderType,
                                    VenueUnavailable)
from tracer.execution.venues.alpaca import AlpacaSpotClient, from_alpaca, legacy_symbol, qty_string
from tracer.models import OrderState, PositionSide, Side

KEYS = ("PKTESTKEYID0001", "s3cr3t-value-never-shown")
CID = "tb-hy-BTC-2411251500-e-1a2b3c"
FAST = 0.3            # client timeout for the fault tests (the fake's timeout fault sleeps 1 s)


@pytest.fixture
def venue():
    with FakeAlpacaTrading(keys=KEYS, cash=10_000.0) as v:
        v.set_price("BTC/USD", 42000.0)
        v.set_price("ETH/USD", 2500.0)
        yield v


@pytest.fixture
def client(venue):
    return AlpacaSpotClient(*KEYS, venue.url, timeout_s=FAST)


def buy(qty: float, cid: str = CID, symbol: str = "BTC/USD") -> OrderSpec:
    return OrderSpec(client_order_id=cid, symbol=symbol, side=Side.BUY, qty=qty)


def sell(qty: float, cid: str, symbol: str = "BTC/USD", reduce_only: bool = False) -> OrderSpec:
    return OrderSpec(client_order_id=cid, symbol=symbol, side=Side.SELL, qty=qty, reduce_only=reduce_only)


def no_secret(e: BaseException) -> None:
    text = f"{e} {e!r}"
    assert KEYS[1] not in text and KEYS[0] not in text
    assert e.__cause__ is None and e.__context__ is None      # no requests exception (with headers) chained


# --- identity, rules, symbols ---------------------------------------------------------------------
def test_identity_and_interface(venue, client):
    for name in ("server_time", "sync_time", "rules", "place_order", "get_order", "cancel_order",
                 "open_orders", "fills", "positions", "balance", "prepare_symbol", "funding"):
        assert callable(getattr(client, name)), name
    for attr in VenueClient.__annotations__:
        assert hasattr(client, attr), attr
    assert client.name == "alpaca" and client.base_url == venue.url and client.is_test_venue
    assert client.supports_venue_stops is False
    assert AlpacaSpotClient(*KEYS, "https://paper-api.alpaca.markets/").is_test_venue
    live = AlpacaSpotClient(*KEYS, "https://api.alpaca.markets/v2")
    assert not live.is_test_venue and live.base_url == "https://api.alpaca.markets"
    assert KEYS[1] not in repr(client)
    assert client.prepare_symbol("BTC/USD", 3) is None
    assert client.funding("BTC/USD", datetime.now(timezone.utc)) == []
    with pytest.raises(AuthError):
        AlpacaSpotClient("", "", venue.url)


def test_symbols_and_quantities():
    assert from_alpaca("BTCUSD") == "BTC/USD" and from_alpaca("ETHUSDT") == "ETH/USDT"
    assert from_alpaca("ETHBTC") == "ETH/BTC" and from_alpaca("BTC/USD") == "BTC/USD"
    assert legacy_symbol("BTC/USD") == "BTCUSD"
    from decimal import Decimal
    assert qty_string(0.1 + 0.2, Decimal("0.001")) == "0.3"
    assert qty_string(0.0011999999999, Decimal("0.0001")) == "0.0012"
    assert qty_string(0.00129, Decimal("0.0001")) == "0.0012"          # off the grid: rounded down
    assert qty_string(0.00001, Decimal("0.00001")) == "0.00001"        # never "1e-05"
    assert qty_string(1500.0, Decimal("1")) == "1500"


def test_rules_from_the_asset(venue, client):
    r = client.rules("BTC/USD")
    assert (r.tick_size, r.step_size, r.min_qty, r.min_notional) == (1.0, 0.0001, 0.0001, 10.0)
    assert venue.requests[-1].path == "/v2/assets/BTCUSD"
    e = client.rules("ETH/USD")
    assert (e.tick_size, e.step_size, e.min_qty) == (0.1, 0.001, 0.001)
    with pytest.raises(OrderRejected) as ex:
        client.rules("NOPE/USD")
    assert ex.value.status == 404


# --- orders -------------------------------------------------------------------------------------------
def test_buy_then_sell_round_trip(venue, client):
    o = client.place_order(buy(0.01))
    assert o.state is OrderState.FILLED and o.client_order_id == CID and o.symbol == "BTC/USD"
    assert (o.qty, o.filled_qty, o.avg_price, o.side) == (0.01, 0.01, 42000.0, Side.BUY)
    assert o.type is VenueOrderType.MARKET and o.venue_order_id == venue.order(CID)["id"]
    assert o.updated_at is not None and o.updated_at.tzinfo is not None
    body = venue.post_bodies[-1]
    assert body == {"symbol": "BTC/USD", "qty": "0.01", "side": "buy", "type": "market",
                    "time_in_force": "ioc", "client_order_id": CID}
    assert venue.post_counts[CID] == 1

    got = client.get_order("BTC/USD", CID)
    assert got is not None and got.state is OrderState.FILLED and got.filled_qty == 0.01
    [f] = client.fills("BTC/USD", CID)
    assert (f.qty, f.price, f.side, f.trade_id) == (0.01, 42000.0, Side.BUY, o.venue_order_id)
    assert f.fee == pytest.approx(1.05) and f.fee == pytest.approx(venue.fees[CID])

    # the fee was taken in BTC: the position is 0.01 * (1 - 0.0025)
    [p] = client.positions()
    assert (p.symbol, p.side) == ("BTC/USD", PositionSide.LONG)
    assert p.qty == pytest.approx(0.009975) and p.entry_price == pytest.approx(42000.0)
    assert p.mark_price == 42000.0
    b = client.balance()
    assert b.wallet == pytest.approx(9580.0) and b.available == pytest.approx(9580.0)
    assert b.equity == pytest.approx(9580.0 + 0.009975 * 42000)

    # selling the bought qty is more than is held -> 403 insufficient balance, nothing booked
    with pytest.raises(InsufficientMargin) as ex:
        client.place_order(sell(0.01, CID + "-x"))
    assert (ex.value.status, ex.value.code) == (403, 40310000) and venue.order(CID + "-x") is None

    venue.set_price("BTC/USD", 43000.0)
    x = client.place_order(sell(0.01, CID + "-x2", reduce_only=True))   # capped: 0.009975 held -> "0.0099"
    assert venue.post_bodies[-1]["qty"] == "0.0099"
    assert x.state is OrderState.FILLED and x.avg_price == 43000.0 and x.side is Side.SELL
    [fx] = client.fills("BTC/USD", CID + "-x2")
    assert fx.fee == pytest.approx(0.0099 * 43000 * 0.0025)
    assert client.balance().wallet == pytest.approx(9580.0 + 0.0099 * 43000 * (1 - 0.0025))
    [dust] = client.positions()                                     # the fee leaves dust below min_qty
    assert dust.qty == pytest.approx(0.000075)
    with pytest.raises(OrderRejected):                              # nothing sellable left: refused here
        client.place_order(sell(0.01, CID + "-x3", reduce_only=True))
    assert CID + "-x3" not in venue.post_counts


def test_reduce_only_sell_below_the_held_qty_is_not_changed(venue, client):
    client.place_order(buy(0.01))
    client.place_order(sell(0.005, "part", reduce_only=True))
    assert venue.post_bodies[-1]["qty"] == "0.005"
    with pytest.raises(OrderRejected):                               # no ETH held at all
        client.place_order(sell(0.1, "eth-x", "ETH/USD", reduce_only=True))
    assert "eth-x" not in venue.post_counts


def test_pending_new_answer_then_filled_on_read():
    with FakeAlpacaTrading(keys=KEYS, async_fills=True) as v:
        v.set_price("BTC/USD", 42000.0)
        c = AlpacaSpotClient(*KEYS, v.url, timeout_s=FAST)
        o = c.place_order(buy(0.01))
        assert o.state is OrderState.SUBMITTED and o.filled_qty == 0 and o.avg_price is None
        assert c.fills("BTC/USD", CID)[0].qty == 0.01
        assert c.get_order("BTC/USD", CID).state is OrderState.FILLED


def test_get_order_unknown_is_none(client):
    assert client.get_order("BTC/USD", "never-sent") is None
    assert client.cancel_order("BTC/USD", "never-sent") is None
    assert client.fills("BTC/USD", "never-sent") == []


def test_float_noise_becomes_an_exact_step_string(venue, client):
    client.place_order(buy(0.1 + 0.2, "eth-1", "ETH/USD"))
    assert venue.post_bodies[-1]["qty"] == "0.3"
    client.place_order(buy(0.0011999999999, "btc-2"))
    assert venue.post_bodies[-1]["qty"] == "0.0012"


def test_market_partial_fill_is_ioc_the_rest_is_canceled(venue, client):
    """The collar can leave a market order partly filled: sent IOC, the rest is canceled, not left resting."""
    venue.inject("POST /v2/orders", "partial", fraction=0.5)
    o = client.place_order(buy(0.01))
    assert venue.post_bodies[-1]["time_in_force"] == "ioc"
    assert o.state is OrderState.CANCELED and o.filled_qty == 0.005 and o.avg_price == 42000.0
    assert client.open_orders() == [] and client.fills("BTC/USD", CID)[0].qty == 0.005
    assert client.get_order("BTC/USD", CID).state is OrderState.CANCELED


def rest_order(client, body: dict) -> None:
    """An order placed around our client (by hand, or by an older version that sent GTC): it rests."""
    client._tc.post("/orders", {"symbol": "BTC/USD", "time_in_force": "gtc", **body})


def test_gtc_partial_fill_rests_open_orders_and_cancel(venue, client):
    venue.inject("POST /v2/orders", "partial", fraction=0.5)
    rest_order(client, {"qty": "0.01", "side": "buy", "type": "market", "client_order_id": CID})
    o = client.get_order("BTC/USD", CID)
    assert o.state is OrderState.PARTIALLY_FILLED and o.filled_qty == 0.005
    assert [x.client_order_id for x in client.open_orders("BTC/USD")] == [CID]
    assert [x.client_order_id for x in client.open_orders()] == [CID]
    assert client.open_orders("ETH/USD") == []
    [f] = client.fills("BTC/USD", CID)
    assert f.qty == 0.005
    c = client.cancel_order("BTC/USD", CID)
    assert c is not None and c.state is OrderState.CANCELED and c.filled_qty == 0.005
    assert client.open_orders() == []
    n = len([r for r in venue.requests if r.method == "DELETE"])
    again = client.cancel_order("BTC/USD", CID)                      # already gone: no second DELETE
    assert again.state is OrderState.CANCELED
    assert len([r for r in venue.requests if r.method == "DELETE"]) == n == 1


def test_cancel_of_a_filled_order_returns_it_filled(venue, client):
    client.place_order(buy(0.01))
    c = client.cancel_order("BTC/USD", CID)
    assert c.state is OrderState.FILLED
    assert not [r for r in venue.requests if r.method == "DELETE"]


def test_no_stops_no_reduce_only_buy_nothing_sent(venue, client):
    stop = OrderSpec(CID, "BTC/USD", Side.SELL, 0.01, type=VenueOrderType.STOP_MARKET, reduce_only=True,
                     stop_price=40000.0)
    with pytest.raises(OrderRejected):
        client.place_order(stop)
    with pytest.raises(OrderRejected):
        client.place_order(OrderSpec(CID, "BTC/USD", Side.BUY, 0.01, reduce_only=True))
    with pytest.raises(OrderRejected):
        client.place_order(buy(0.00001))                          # below the step
    assert not venue.post_counts


def test_duplicate_client_id_is_typed_and_booked_once(venue, client):
    client.place_order(buy(0.01))                                   # filled: the id stays taken for good
    with pytest.raises(DuplicateClientId) as ex:
        client.place_order(buy(0.01))
    assert (ex.value.status, ex.value.code) == (422, 40010001) and not isinstance(ex.value, OrderRejected)
    assert "client_order_id must be unique" in str(ex.value)
    assert len(venue.orders_for(CID)) == 1 and venue.post_counts[CID] == 2
    with pytest.raises(OrderRejected) as other:                     # another 422 of the same code: a refusal
        client.place_order(buy(0.01, cid="x" * 129))
    assert other.value.code == 40010001 and not isinstance(other.value, DuplicateClientId)


def test_late_processed_post_resent_is_a_duplicate_client_id(venue, client):
    venue.inject("POST /v2/orders", "timeout")
    with pytest.raises(Ambiguous):
        client.place_order(buy(0.01))
    with pytest.raises(DuplicateClientId):                          # the first POST was booked after all
        client.place_order(buy(0.01))
    assert venue.post_counts[CID] == 2 and len(venue.orders_for(CID)) == 1
    assert client.get_order("BTC/USD", CID).state is OrderState.FILLED


def test_reduce_only_sell_is_capped_at_qty_available(venue, client):
    """Coins held by an open sell order are not available: the cap is qty_available, not qty."""
    client.place_order(buy(0.01))                                   # 0.009975 held after the fee
    rest_order(client, {"qty": "0.005", "side": "sell", "type": "limit", "limit_price": "99999",
                        "client_order_id": "resting-tp"})
    [raw] = client._tc.get_all_positions()
    assert (raw.qty, raw.qty_available) == ("0.009975", "0.004975")
    x = client.place_order(sell(0.01, CID + "-x", reduce_only=True))
    assert venue.post_bodies[-1]["qty"] == "0.0049" and x.state is OrderState.FILLED


def test_reduce_only_cap_falls_back_to_qty(venue, client):
    venue.send_qty_available = False
    client.place_order(buy(0.01))
    assert client._tc.get_all_positions()[0].qty_available is None
    client.place_order(sell(0.01, CID + "-x", reduce_only=True))
    assert venue.post_bodies[-1]["qty"] == "0.0099"


def test_business_refusals(venue, client):
    with pytest.raises(OrderRejected) as ex:                          # $8.40 < $10: 403, but not auth
        client.place_order(buy(0.0002))
    assert ex.value.status == 403 and "minimal amount" in str(ex.value)
    with pytest.raises(InsufficientMargin) as ex2:                    # $42,000 > $10,000 cash
        client.place_order(buy(1.0, "big"))
    assert "insufficient balance" in str(ex2.value)
    assert not venue.orders


def test_wrong_keys_are_an_auth_error_without_the_secret(venue):
    bad = AlpacaSpotClient("PKWRONGKEY", "wrong-secret-xyz", venue.url, timeout_s=FAST)
    with pytest.raises(AuthError) as ex:
        bad.balance()
    assert (ex.value.status, ex.value.code) == (401, 40110000)
    assert "wrong-secret-xyz" not in str(ex.value)
    with pytest.raises(AuthError):
        bad.place_order(buy(0.01))
    assert not venue.orders


def test_forbidden_is_auth_but_insufficient_is_margin(venue, client):
    venue.inject("GET /v2/account", "forbidden")
    with pytest.raises(AuthError) as ex:
        client.balance()
    assert ex.value.status == 403
    no_secret(ex.value)


def test_a_404_that_is_not_alpacas_is_not_never_seen(venue, client):
    """A wrong base URL also answers 404: that must not read as "the venue never saw the order"."""
    wrong = AlpacaSpotClient(*KEYS, venue.url + "/nope", timeout_s=FAST)
    with pytest.raises(VenueError):
        wrong.get_order("BTC/USD", CID)


# --- faults: the POST is sent once, and the answer says what is known ----------------------------------
@pytest.mark.parametrize("fault", ["timeout", "lost", "lost_504", "garbled"])
def test_booked_but_no_answer_is_ambiguous_and_found_by_client_id(venue, client, fault):
    venue.inject("POST /v2/orders", fault)
    with pytest.raises(Ambiguous) as ex:
        client.place_order(buy(0.01))
    no_secret(ex.value)
    assert venue.post_counts[CID] == 1 and len(venue.orders_for(CID)) == 1
    found = client.get_order("BTC/USD", CID)
    assert found is not None and found.state is OrderState.FILLED and found.filled_qty == 0.01


def test_504_before_booking_is_ambiguous_and_not_retried(venue, client):
    venue.inject("POST /v2/orders", "504")
    with pytest.raises(Ambiguous) as ex:
        client.place_order(buy(0.01))
    assert ex.value.status == 504
    assert venue.post_counts[CID] == 1 and client.get_order("BTC/USD", CID) is None


def test_429_is_rate_limited_with_retry_after_and_not_retried(venue, client):
    venue.inject("POST /v2/orders", "429", retry_after="7")
    with pytest.raises(RateLimited) as ex:
        client.place_order(buy(0.01))
    assert ex.value.retry_after_s == 7.0 and ex.value.status == 429 and ex.value.used_weight == 200
    assert venue.post_counts[CID] == 1 and not venue.orders
    venue.inject("GET /v2/account", "429", retry_after=None, reset_in_s=30)
    with pytest.raises(RateLimited) as ex2:
        client.balance()
    assert 25.0 <= ex2.value.retry_after_s <= 31.0
    venue.inject("GET /v2/positions", "429", retry_after=None)
    with pytest.raises(RateLimited) as ex3:
        client.positions()
    assert ex3.value.retry_after_s == 60.0
    assert client.place_order(buy(0.01)).state is OrderState.FILLED   # once the limit clears


def test_alpaca_py_itself_would_re_post(venue):
    """Why the client disables alpaca-py's retries: left alone, it re-POSTs after a 504."""
    from alpaca.common.constants import DEFAULT_RETRY_ATTEMPTS, DEFAULT_RETRY_EXCEPTION_CODES
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import MarketOrderRequest

    assert DEFAULT_RETRY_EXCEPTION_CODES == [429, 504] and DEFAULT_RETRY_ATTEMPTS == 3
    raw = TradingClient(*KEYS, paper=True, url_override=venue.url)
    raw._retry_wait = 0                      # its default sleeps 3 s between attempts
    venue.inject("POST /v2/orders", "504")
    raw.submit_order(MarketOrderRequest(symbol="BTC/USD", qty=0.01, side=OrderSide.BUY,
                                        time_in_force=TimeInForce.GTC, client_order_id=CID))
    assert venue.post_counts[CID] == 2


@pytest.mark.parametrize("endpoint,fault,call", [
    ("GET /v2/account", "500", lambda c: c.balance()),
    ("GET /v2/positions", "503", lambda c: c.positions()),
    ("GET /v2/orders:by_client_order_id", "timeout", lambda c: c.get_order("BTC/USD", CID)),
    ("GET /v2/orders", "drop", lambda c: c.open_orders()),
    ("GET /v2/assets/{symbol}", "502", lambda c: c.rules("BTC/USD")),
    ("GET /v2/clock", "lost", lambda c: c.server_time()),
])
def test_read_faults_are_ambiguous(venue, client, endpoint, fault, call):
    venue.inject(endpoint, fault)
    with pytest.raises(Ambiguous) as ex:
        call(client)
    no_secret(ex.value)
    call(client)                                                      # the next attempt succeeds


def test_latency_within_the_timeout_is_fine(venue):
    c = AlpacaSpotClient(*KEYS, venue.url, timeout_s=2.0)
    venue.inject("POST /v2/orders", "latency", delay_s=0.2)
    assert c.place_order(buy(0.01)).state is OrderState.FILLED


def test_down_is_unavailable_and_nothing_is_sent(venue, client):
    assert client.balance().wallet == 10_000.0                        # a keep-alive connection is open
    venue.down()
    with pytest.raises(VenueUnavailable) as ex:
        client.balance()
    no_secret(ex.value)
    with pytest.raises(VenueUnavailable):
        client.place_order(buy(0.01))
    assert not venue.post_counts
    venue.up()
    assert client.place_order(buy(0.01)).state is OrderState.FILLED


def test_closed_port_is_unavailable():
    with refused_port() as port:
        c = AlpacaSpotClient(*KEYS, f"http://127.0.0.1:{port}", timeout_s=FAST)
        with pytest.raises(VenueUnavailable):
            c.server_time()


def test_every_error_is_a_venue_error(venue, client):
    venue.inject("*", "500", times=20)
    for call in (client.balance, client.positions, client.open_orders, client.server_time,
                 lambda: client.rules("BTC/USD"), lambda: client.get_order("BTC/USD", CID),
                 lambda: client.place_order(buy(0.01, "other")), lambda: client.fills("BTC/USD", CID)):
        with pytest.raises(VenueError):
            call()


# --- time -----------------------------------------------------------------------------------------------
def test_server_time_and_offset():
    with FakeAlpacaTrading(keys=KEYS, clock_skew_s=120.0) as v:
        c = AlpacaSpotClient(*KEYS, v.url, timeout_s=1.0)
        st = c.server_time()
        assert st.tzinfo is not None and st.utcoffset().total_seconds() == 0 and st.tzinfo == timezone.utc
        off = c.sync_time()
        assert 118_000 <= off <= 122_000 and c.time_offset_ms == off
