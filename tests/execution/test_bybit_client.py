"""BybitFuturesClient through the real pybit SDK, over real HTTP, against FakeBybit on 127.0.0.1."""
from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from pybit.unified_trading import HTTP

from fakes.bybit_venue import FakeBybit
from tracer.execution.venue import (
    Ambiguous, AuthError, DuplicateClientId, InsufficientMargin, IpBanned, OrderRejected, OrderSpec, RateLimited,
    TimestampDrift, VenueError, VenueOrderType, VenueUnavailable,
)
from tracer.execution.venues.bybit import BybitFuturesClient, fmt_step
from tracer.models import OrderState, PositionSide, Side

KEY, SECRET = "test-key", "test-secret-do-not-log"


@pytest.fixture
def venue():
    with FakeBybit(api_key=KEY, api_secret=SECRET) as v:
        yield v


def client(venue: FakeBybit, secret: str = SECRET, timeout_s: float = 2.0, **kw) -> BybitFuturesClient:
    return BybitFuturesClient(KEY, secret, venue.url, timeout_s=timeout_s, **kw)


def buy(cid: str, qty: float = 0.01, **kw) -> OrderSpec:
    return OrderSpec(client_order_id=cid, symbol="BTC/USD", side=Side.BUY, qty=qty, **kw)


def test_identity_and_no_network_in_constructor():
    c = BybitFuturesClient(KEY, SECRET, "http://127.0.0.1:9/")       # nothing listens there
    assert c.name == "bybit" and c.supports_venue_stops and c.is_test_venue
    assert c.base_url == "http://127.0.0.1:9"
    assert not BybitFuturesClient(KEY, SECRET, "https://api.bybit.com").is_test_venue
    assert BybitFuturesClient(KEY, SECRET, "https://api-testnet.bybit.com").is_test_venue
    assert SECRET not in repr(c) and KEY not in repr(c)


def test_fmt_step_exact_strings():
    assert fmt_step(0.1 + 0.2, 0.001) == "0.300"
    assert fmt_step(42123.456, 0.10) == "42123.5"
    assert fmt_step(3, 1) == "3" and fmt_step(0.029999999999, 0.01) == "0.03"


def test_rules_time_and_sync(venue):
    c = client(venue)
    r = c.rules("BTC/USD")
    assert (r.tick_size, r.step_size, r.min_qty, r.min_notional) == (0.1, 0.001, 0.001, 5.0)
    n = len(venue.requests)
    c.rules("BTC/USD")
    assert len(venue.requests) == n                                     # cached
    with pytest.raises(OrderRejected):
        c.rules("DOGE/USD")
    assert abs((c.server_time() - datetime.now(timezone.utc)).total_seconds()) < 5
    venue.clock_offset_ms = 30_000
    assert 25_000 < c.sync_time() < 35_000


def test_market_round_trip_positions_balance_fills(venue):
    c = client(venue)
    c.prepare_symbol("BTC/USD", 5)
    c.prepare_symbol("BTC/USD", 5)                                      # idempotent (110043 is success)
    assert venue.margin_mode == "ISOLATED_MARGIN" and venue.leverage["BTCUSDT"] == 5
    assert venue.margin_mode_sets == 1                                  # the second call saw it was set
    venue.set_price("BTCUSDT", 42000.0)
    o = c.place_order(buy("tb-fu-BTC-1", qty=0.1 + 0.2))                # float noise -> "0.300"
    assert o.state is OrderState.FILLED and o.filled_qty == pytest.approx(0.3) and o.avg_price == 42000.0
    assert o.client_order_id == "tb-fu-BTC-1" and o.symbol == "BTC/USD" and o.venue_order_id
    create = [r for r in venue.requests if r.path == "/v5/order/create"][-1].json()
    assert create["qty"] == "0.300" and create["orderLinkId"] == "tb-fu-BTC-1" and create["positionIdx"] == 0
    assert venue.post_counts["tb-fu-BTC-1"] == 1

    got = c.get_order("BTC/USD", "tb-fu-BTC-1")
    assert got is not None and got.state is OrderState.FILLED and got.filled_qty == pytest.approx(0.3)
    assert c.get_order("BTC/USD", "never-sent") is None

    fills = c.fills("BTC/USD", "tb-fu-BTC-1")
    assert len(fills) == 1 and fills[0].price == 42000.0 and fills[0].qty == pytest.approx(0.3)
    assert fills[0].fee == pytest.approx(0.3 * 42000 * 0.00055)
    assert c.fills("BTC/USD", "never-sent") == []

    venue.set_price("BTCUSDT", 43000.0)
    [p] = c.positions()
    assert p.symbol == "BTC/USD" and p.side is PositionSide.LONG and p.qty == pytest.approx(0.3)
    assert p.entry_price == 42000.0 and p.leverage == 5 and p.mark_price == 43000.0
    assert p.margin == pytest.approx(0.3 * 42000 / 5) and p.unrealized_pnl == pytest.approx(300.0)
    assert p.liquidation_price == pytest.approx(42000 * (1 - 1 / 5 + 0.005))
    b = c.balance()
    fee = 0.3 * 42000 * 0.00055
    assert b.wallet == pytest.approx(10_000 - fee) and b.equity == pytest.approx(10_000 - fee + 300)
    assert b.available == pytest.approx(10_000 - fee - 0.3 * 42000 / 5)

    close = c.place_order(OrderSpec("tb-fu-BTC-1-x", "BTC/USD", Side.SELL, 0.3, reduce_only=True))
    assert close.state is OrderState.FILLED and close.reduce_only
    assert c.positions() == []
    assert c.fills("BTC/USD", "tb-fu-BTC-1-x")[0].realized_pnl == pytest.approx(300.0)
    with pytest.raises(OrderRejected) as e:                               # nothing left to reduce
        c.place_order(OrderSpec("tb-fu-BTC-2-x", "BTC/USD", Side.SELL, 0.3, reduce_only=True))
    assert e.value.code == 110017


def test_a_classic_account_is_refused_before_any_entry():
    """Bybit's classic accounts keep their wallet and funding where a Unified account's are not (the wallet answers
    only CONTRACT or SPOT, the transaction log only a Unified account): the agent could not account for a position
    there, so none is opened. The switch a classic account takes (or its 110026 "not modified") says which it is."""
    with FakeBybit(api_key=KEY, api_secret=SECRET, unified=False) as v:
        c = client(v)
        for _ in range(2):
            with pytest.raises(OrderRejected, match="classic account") as e:
                c.prepare_symbol("ETH/USD", 3)
            assert e.value.code == "classic_account"
        assert not [r for r in v.requests if r.path == "/v5/position/set-leverage"]   # stopped before it
        with pytest.raises(OrderRejected):
            c.balance()                                                  # its UNIFIED wallet does not exist


def test_protective_stop_found_cancelled_and_triggered(venue):
    c = client(venue)
    c.prepare_symbol("BTC/USD", 5)
    c.place_order(buy("e1", qty=0.1))
    stop = c.place_order(OrderSpec("e1-s", "BTC/USD", Side.SELL, 0.1, type=VenueOrderType.STOP_MARKET,
                                   reduce_only=True, stop_price=40000.04))
    assert stop.state is OrderState.SUBMITTED and stop.type is VenueOrderType.STOP_MARKET
    assert stop.stop_price == 40000.0 and stop.reduce_only
    body = [r for r in venue.requests if r.path == "/v5/order/create"][-1].json()
    assert body["triggerPrice"] == "40000.0" and body["triggerDirection"] == 2 and body["triggerBy"] == "MarkPrice"
    tp = c.place_order(OrderSpec("e1-t", "BTC/USD", Side.SELL, 0.1, type=VenueOrderType.TAKE_PROFIT_MARKET,
                                 reduce_only=True, stop_price=45000))
    assert tp.type is VenueOrderType.TAKE_PROFIT_MARKET
    assert {o.client_order_id for o in c.open_orders("BTC/USD")} == {"e1-s", "e1-t"}
    assert {o.client_order_id for o in c.open_orders()} == {"e1-s", "e1-t"}
    assert c.get_order("BTC/USD", "e1-s").state is OrderState.SUBMITTED

    cancelled = c.cancel_order("BTC/USD", "e1-t")
    assert cancelled is not None and cancelled.state is OrderState.CANCELED
    again = c.cancel_order("BTC/USD", "e1-t")                            # too late (110001): its final state
    assert again is not None and again.state is OrderState.CANCELED
    assert c.cancel_order("BTC/USD", "never-sent") is None
    assert [o.client_order_id for o in c.open_orders()] == ["e1-s"]

    with pytest.raises(OrderRejected) as e:                               # a sell stop above the price
        c.place_order(OrderSpec("e1-bad", "BTC/USD", Side.SELL, 0.1, type=VenueOrderType.STOP_MARKET,
                                reduce_only=True, stop_price=43000))
    assert e.value.code == 110093
    assert "would immediately trigger" in str(e.value) and "expect Falling" in str(e.value)   # ours + Bybit's

    venue.set_price("BTCUSDT", 39990.0)                                  # crosses the stop
    done = c.get_order("BTC/USD", "e1-s")
    assert done.state is OrderState.FILLED and done.avg_price == 39990.0
    assert c.positions() == [] and c.open_orders() == []
    assert c.cancel_order("BTC/USD", "e1-s").state is OrderState.FILLED  # a filled stop reads FILLED
    [f] = c.fills("BTC/USD", "e1-s")
    assert f.side is Side.SELL and f.realized_pnl == pytest.approx((39990 - 42000) * 0.1)


def test_short_stop_rises_and_liquidation(venue):
    c = client(venue)
    c.prepare_symbol("BTC/USD", 10)
    c.place_order(OrderSpec("s1", "BTC/USD", Side.SELL, 0.05))
    c.place_order(OrderSpec("s1-s", "BTC/USD", Side.BUY, 0.05, type=VenueOrderType.STOP_MARKET,
                            reduce_only=True, stop_price=44000))
    assert [r for r in venue.requests if r.path == "/v5/order/create"][-1].json()["triggerDirection"] == 1
    [p] = c.positions()
    assert p.side is PositionSide.SHORT
    c.cancel_order("BTC/USD", "s1-s")
    wallet = c.balance().wallet
    venue.set_price("BTCUSDT", p.liquidation_price + 50)                # beyond liquidation, no stop
    assert c.positions() == []
    assert c.balance().wallet == pytest.approx(wallet - p.margin - 0.05 * p.liquidation_price * 0.00055)


def test_funding(venue):
    c = client(venue)
    since = datetime.now(timezone.utc) - timedelta(days=20)             # several 7-day windows
    c.place_order(buy("f1", qty=0.1))
    now_ms = int(time.time() * 1000)
    paid = venue.settle_funding("BTCUSDT", 0.0001, ts_ms=now_ms - 16 * 86400_000)   # 16 days ago: 3rd window
    assert paid == pytest.approx(0.42)
    venue.settle_funding("BTCUSDT", -0.0002, ts_ms=now_ms - 3600_000)
    venue.settle_funding("BTCUSDT", 0.0003, ts_ms=now_ms - 30 * 86400_000)          # before `since`
    pays = c.funding("BTC/USD", since)
    assert [round(p.amount, 6) for p in pays] == [0.42, -0.84]
    assert pays[0].ts < pays[1].ts
    assert all(p.symbol == "BTC/USD" for p in pays)
    assert c.funding("ETH/USD", since) == []


def test_bad_secret_is_auth_error_and_signature_really_checked(venue, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthError) as e:
        client(venue, secret="wrong").balance()
    assert e.value.code == 10004 and "wrong" not in str(e.value) and KEY not in str(e.value)
    with pytest.raises(AuthError) as e:
        BybitFuturesClient("nope", SECRET, venue.url).positions()
    assert e.value.code == 10003
    assert client(venue).balance().wallet == 10_000                       # the right secret passes
    assert SECRET not in caplog.text and SECRET not in str(e.value)


def test_fake_checks_the_signed_payload_and_window(venue):
    """The fake verifies HMAC(timestamp + key + recvWindow + query) on the raw query it received."""
    def get(query: str, sign_query: str, ts: int) -> dict:
        sig = hmac.new(SECRET.encode(), f"{ts}{KEY}5000{sign_query}".encode(), hashlib.sha256).hexdigest()
        h = {"X-BAPI-API-KEY": KEY, "X-BAPI-TIMESTAMP": str(ts), "X-BAPI-RECV-WINDOW": "5000", "X-BAPI-SIGN": sig}
        return requests.get(f"{venue.url}/v5/position/list?{query}", headers=h, timeout=2).json()

    now = int(time.time() * 1000)
    q = "category=linear&settleCoin=USDT"
    assert get(q, q, now)["retCode"] == 0
    assert get(q, "category=linear&settleCoin=USDC", now)["retCode"] == 10004
    assert get(q, q, now - 6000)["retCode"] == 10002                     # older than recvWindow
    assert get(q, q, now + 5000)["retCode"] == 10002                     # more than 1 s ahead


def test_timestamp_drift_then_sync(venue):
    c = client(venue)
    venue.clock_offset_ms = 60_000                                       # the venue runs a minute ahead
    with pytest.raises(TimestampDrift) as e:
        c.positions()
    assert e.value.code == 10002
    c.sync_time()
    assert c.positions() == []
    skewed = client(venue, clock=lambda: time.time() - 120)             # our clock two minutes late
    venue.clock_offset_ms = 0
    with pytest.raises(TimestampDrift):
        skewed.balance()
    assert 115_000 < skewed.sync_time() < 125_000
    assert skewed.balance().wallet == 10_000
    venue.fail_next("10002")                                             # not retried by pybit
    with pytest.raises(TimestampDrift):
        c.place_order(buy("d1"))
    assert venue.post_counts["d1"] == 1


@pytest.mark.parametrize("kind, kw, err, code", [
    ("reject", {"code": 170136, "msg": "Order quantity has too many decimals"}, OrderRejected, 170136),
    ("reject", {"code": 110003, "msg": "Order price is out of permissible range"}, OrderRejected, 110003),
    ("reject", {"code": 10001, "msg": "params error"}, OrderRejected, 10001),
    ("reject", {"code": 110007, "msg": "ab not enough for new order"}, InsufficientMargin, 110007),
    ("reject", {"code": 110004, "msg": "Insufficient wallet balance"}, InsufficientMargin, 110004),
    ("reject", {"code": 10005, "msg": "Permission denied"}, AuthError, 10005),
    ("reject", {"code": 33004, "msg": "api key expired"}, AuthError, 33004),
    ("reject", {"code": 10016, "msg": "Internal server error"}, Ambiguous, 10016),
])
def test_rejects_are_typed_and_sent_once(venue, kind, kw, err, code):
    c = client(venue)
    venue.fail_next(kind, **kw)
    with pytest.raises(err) as e:
        c.place_order(buy("r1"))
    assert e.value.code == code and kw["msg"] in str(e.value)
    assert venue.post_counts["r1"] == 1


def test_natural_rejects(venue):
    c = client(venue)
    with pytest.raises(OrderRejected) as e:                               # 0.001 BTC at 4000 < 5 USDT
        venue.set_price("BTCUSDT", 4000.0)
        c.place_order(buy("n1", qty=0.001))
    assert e.value.code == 110094
    venue.set_price("BTCUSDT", 42000.0)
    with pytest.raises(InsufficientMargin) as e:                          # 100 BTC at 10x on 10k USDT
        c.place_order(buy("n2", qty=100))
    assert e.value.code == 110007
    c.place_order(buy("n3"))
    with pytest.raises(DuplicateClientId) as d:                           # duplicate orderLinkId (n3 filled)
        c.place_order(buy("n3"))
    assert d.value.code == 110072 and "OrderLinkedID is duplicate" in str(d.value)
    assert venue.post_counts["n3"] == 2 and len([o for o in venue.orders.values() if o["orderLinkId"] == "n3"]) == 1


def test_rate_limits(venue):
    c = client(venue)
    venue.fail_next("rate_limit", reset_ms=1500)
    with pytest.raises(RateLimited) as e:
        c.place_order(buy("rl1"))
    assert e.value.code == 10006 and 0.5 < e.value.retry_after_s <= 1.6 and e.value.used_weight == 10
    assert venue.post_counts["rl1"] == 1 and c.get_order("BTC/USD", "rl1") is None
    venue.fail_next("403", path="/v5/position/list")
    with pytest.raises(RateLimited) as e:
        c.positions()
    assert e.value.status == 403 and e.value.retry_after_s == 600


def test_5xx_and_partial_fill(venue):
    c = client(venue)
    venue.fail_next("5xx")
    with pytest.raises(Ambiguous) as e:
        c.place_order(buy("x1"))
    assert e.value.status == 502 and venue.post_counts["x1"] == 1
    assert c.get_order("BTC/USD", "x1") is None                          # this 502 came before the matcher
    venue.fail_next("partial", ratio=0.5)
    o = c.place_order(buy("p1", qty=0.1))
    assert o.state is OrderState.CANCELED and o.filled_qty == pytest.approx(0.05)
    assert c.positions()[0].qty == pytest.approx(0.05)


def test_lost_response_is_ambiguous_and_order_is_found(venue):
    c = client(venue)
    venue.fail_next("lost")
    with pytest.raises(Ambiguous):
        c.place_order(buy("l1"))
    assert venue.post_counts["l1"] == 1                                  # not re-sent by pybit / urllib3
    found = c.get_order("BTC/USD", "l1")
    assert found is not None and found.state is OrderState.FILLED


def test_timeout_is_ambiguous_and_latency_is_fine(venue):
    c = client(venue, timeout_s=0.4)
    venue.fail_next("timeout", s=1.0)
    with pytest.raises(Ambiguous):
        c.place_order(buy("t1"))
    assert venue.post_counts["t1"] == 1
    assert c.get_order("BTC/USD", "t1").state is OrderState.FILLED
    # a slow answer well inside the timeout is fine (a client with room for it: a loaded machine adds its own
    # delay to the venue's, and this client sends once, without retries)
    venue.fail_next("latency", path="/v5/position/list", s=0.2)
    assert len(client(venue, timeout_s=2.0).positions()) == 1
    time.sleep(0.7)                                                      # let the slow handler finish
    assert venue.post_counts["t1"] == 1


def test_down_is_venue_unavailable_then_up(venue):
    c = client(venue)
    assert c.positions() == []                                           # a pooled keep-alive connection
    venue.down()
    try:
        with pytest.raises(VenueUnavailable):
            c.positions()
        with pytest.raises(VenueUnavailable):
            c.place_order(buy("u1"))
        with pytest.raises(VenueUnavailable):
            client(venue).server_time()
    finally:
        venue.up()
    assert venue.post_counts["u1"] == 0
    assert c.positions() == []


def test_only_typed_errors_escape(venue):
    c = BybitFuturesClient(KEY, SECRET, venue.url + "/nowhere", timeout_s=1.0)
    with pytest.raises(VenueError) as e:                                 # unknown route: retCode 10017
        c.balance()
    assert type(e.value) is OrderRejected and e.value.code == 10017
    c = client(venue)
    venue.fail_next("malformed", path="/v5/account/wallet-balance")
    with pytest.raises(Ambiguous):
        c.balance()
    venue.fail_next("malformed")
    with pytest.raises(Ambiguous):
        c.place_order(buy("m1"))
    assert venue.post_counts["m1"] == 1


def test_plain_pybit_would_resend_an_order_our_client_does_not(venue):
    """Why the client disables pybit's retries: by default pybit re-sends a create POST on 10002."""
    raw = HTTP(api_key=KEY, api_secret=SECRET, retry_delay=0)
    raw.endpoint = venue.url
    venue.fail_next("10002")
    raw.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.001",
                    orderLinkId="raw1", positionIdx=0)
    assert venue.post_counts["raw1"] == 2                                 # the SDK sent it twice
    venue.fail_next("10002")
    with pytest.raises(TimestampDrift):
        client(venue).place_order(buy("ours1"))
    assert venue.post_counts["ours1"] == 1


def test_short_stop_already_through_its_trigger_reads_would_immediately_trigger(venue):
    c = client(venue)
    c.place_order(OrderSpec("s2", "BTC/USD", Side.SELL, 0.05))
    with pytest.raises(OrderRejected) as e:                               # a buy stop below the price
        c.place_order(OrderSpec("s2-s", "BTC/USD", Side.BUY, 0.05, type=VenueOrderType.STOP_MARKET,
                                reduce_only=True, stop_price=41000))
    assert e.value.code == 110092 and "would immediately trigger" in str(e.value) and "expect Rising" in str(e.value)
    with pytest.raises(OrderRejected) as other:                           # other rejects keep their own words
        c.place_order(OrderSpec("s3", "BTC/USD", Side.SELL, 0.001, reduce_only=True))   # adds to the short
    assert other.value.code == 110017 and "immediately" not in str(other.value)


def test_late_processed_post_resent_is_a_duplicate_client_id_and_found(venue):
    """A POST that timed out was processed: sending it again is refused 110072, and the order is ours to find."""
    c = client(venue, timeout_s=0.4)
    venue.fail_next("timeout", s=1.0)
    with pytest.raises(Ambiguous):
        c.place_order(buy("late1"))
    with pytest.raises(DuplicateClientId) as e:
        c.place_order(buy("late1"))
    assert e.value.code == 110072 and not isinstance(e.value, OrderRejected)
    assert venue.post_counts["late1"] == 2
    assert len([o for o in venue.orders.values() if o["orderLinkId"] == "late1"]) == 1
    assert c.get_order("BTC/USD", "late1").state is OrderState.FILLED


@pytest.mark.parametrize("code, msg, low, high", [
    (429, "The trading service is experiencing a high server load. Please retry.", 0.5, 1.6),
    (10018, "Exceeded the IP Rate Limit.", 600, 600),                       # an IP limit: at least 10 minutes
])
def test_overload_and_ip_rate_limit_codes_are_rate_limited(venue, code, msg, low, high):
    c = client(venue)
    venue.fail_next("rate_limit", code=code, msg=msg, reset_ms=1500)
    with pytest.raises(RateLimited) as e:
        c.place_order(buy("ov1"))
    assert e.value.code == code and low <= e.value.retry_after_s <= high and msg in str(e.value)
    assert venue.post_counts["ov1"] == 1 and c.get_order("BTC/USD", "ov1") is None


def test_ip_banned_code_stops_for_half_an_hour(venue):
    c = client(venue)
    venue.fail_next("reject", path="/v5/position/list", code=10009, msg="IP has been banned.")
    with pytest.raises(IpBanned) as e:
        c.positions()
    left = (e.value.until - datetime.now(timezone.utc)).total_seconds()
    assert e.value.code == 10009 and 1790 < left <= 1800 and not isinstance(e.value, AuthError)


def test_just_filled_order_is_found_while_history_lags(venue):
    """History lags a finished order; realtime queried by orderLinkId still has it (its recent-closed cache)."""
    c = client(venue)
    venue.history_lag_s = 60.0
    o = c.place_order(buy("jf1", qty=0.01))
    assert o.state is OrderState.FILLED and o.avg_price == 42000.0          # read back at once, not SUBMITTED
    got = c.get_order("BTC/USD", "jf1")
    assert got is not None and got.state is OrderState.FILLED and got.filled_qty == pytest.approx(0.01)
    history = [r for r in venue.requests if r.path == "/v5/order/history"]
    assert history == []                                                   # realtime answered; history not needed
    assert c.fills("BTC/USD", "jf1")[0].qty == pytest.approx(0.01)
    # the fake as documented: openOnly=0 lists open orders only, openOnly=1 the recently closed ones
    assert c._http.get_open_orders(category="linear", symbol="BTCUSDT")["result"]["list"] == []
    closed = c._http.get_open_orders(category="linear", symbol="BTCUSDT", openOnly=1)["result"]["list"]
    assert [x["orderLinkId"] for x in closed] == ["jf1"]
    assert c._http.get_order_history(category="linear", symbol="BTCUSDT")["result"]["list"] == []   # lagging
    # after a Bybit restart realtime forgets closed orders: missing until history catches up
    venue.restart()
    assert c.get_order("BTC/USD", "jf1") is None
    venue.history_lag_s = 0.0
    assert c.get_order("BTC/USD", "jf1").state is OrderState.FILLED


WEEK_MS = 7 * 86_400_000


def _stop_filled_long(c: BybitFuturesClient, venue: FakeBybit, cid: str) -> None:
    """A long of 0.01 at 42,000 whose venue stop (41,000, ``cid``) fills at 40,800."""
    c.place_order(buy(cid, qty=0.01))
    c.place_order(OrderSpec(f"{cid}-sl", "BTC/USD", Side.SELL, 0.01, type=VenueOrderType.STOP_MARKET,
                            reduce_only=True, stop_price=41000))
    venue.set_price("BTCUSDT", 40800.0)


def test_an_order_finished_more_than_a_week_ago_is_found_in_the_weeks_before(venue):
    """History without a range answers the past 7 days ("If not passed, query the past 7 days data by default"):
    a stop filled 8 days ago, after a Bybit restart emptied realtime's cache, is asked for a week at a time further
    back, as far as a bounded horizon; a lookup that realtime answers asks nothing more."""
    c = client(venue)
    _stop_filled_long(c, venue, "wk1")
    n = len(venue.requests)
    assert c.get_order("BTC/USD", "wk1-sl").state is OrderState.FILLED
    assert [r.path for r in venue.requests[n:]] == ["/v5/order/realtime"]
    venue.clock_offset_ms += 8 * 86_400_000
    venue.restart()
    c.sync_time()
    assert c._http.get_order_history(category="linear", symbol="BTCUSDT")["result"]["list"] == []   # its default
    got = c.get_order("BTC/USD", "wk1-sl")
    assert got is not None and got.state is OrderState.FILLED and got.avg_price == 40800.0
    n = len(venue.requests)
    assert c.get_order("BTC/USD", "never-sent") is None
    history = [r.query for r in venue.requests[n:] if r.path == "/v5/order/history"]
    assert len(history) == 5 and "startTime" not in history[0]          # the default week, then four more
    spans = [(int(q["startTime"]), int(q["endTime"])) for q in history[1:]]
    assert all(0 < end - start <= WEEK_MS for start, end in spans)       # Bybit refuses a longer range
    assert all(spans[k + 1][1] + 1 >= spans[k][0] for k in range(3))     # no gap between the weeks


def test_fills_of_an_order_filled_more_than_a_week_ago_keep_their_fee(venue):
    """An orderId makes the execution list ignore "other input parameters", the time range too, and then it answers
    only the past 7 days: the fills are asked by symbol over the order's own time range and picked by orderId."""
    c = client(venue)
    _stop_filled_long(c, venue, "wk2")
    c.place_order(buy("wk2-other", qty=0.02))                          # another order's fill in the same weeks
    venue.clock_offset_ms += 8 * 86_400_000
    c.sync_time()
    n = len(venue.requests)
    [f] = c.fills("BTC/USD", "wk2-sl")
    assert (f.qty, f.price) == (pytest.approx(0.01), 40800.0) and f.fee == pytest.approx(0.01 * 40800 * 0.00055)
    assert f.realized_pnl == pytest.approx(-12.0)
    asked = [r.query for r in venue.requests[n:] if r.path == "/v5/execution/list"]
    assert asked and all("orderId" not in q and q["symbol"] == "BTCUSDT" and "startTime" in q for q in asked)


def test_a_delisting_is_read_as_a_settlement_at_its_price_and_fee(venue):
    """Bybit closes a delisted contract's position itself: execType Delivery ("Position closed by contract
    delisted"), read as the venue's own close, a settlement, by both forced_closes and outside_fills."""
    c = client(venue)
    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    c.place_order(buy("dl1", qty=0.01))
    venue.deliver("BTCUSDT", 41500.0)
    assert c.positions() == []
    [o] = c.forced_closes("BTC/USD", since)
    assert o.reason == "settlement" and o.filled_qty == pytest.approx(0.01) and o.avg_price == 41500.0
    assert o.fee == pytest.approx(0.01 * 41500 * 0.00055)
    [f] = c.outside_fills("BTC/USD", since, {"dl1": False})
    assert (f.reason, f.price, f.side) == ("settlement", 41500.0, Side.SELL)
    assert f.fee == pytest.approx(0.01 * 41500 * 0.00055)


def test_an_account_in_hedge_mode_is_refused_as_hedge_mode(venue):
    """Our orders carry positionIdx 0 (one-way); in hedge mode Bybit answers 10001 "position idx not match position
    mode": a refusal that says to switch to one-way mode, with the code the VenueBroker alerts on."""
    venue.hedge_mode = True
    c = client(venue)
    with pytest.raises(OrderRejected, match="One-Way Mode") as e:
        c.place_order(buy("hm1", qty=0.01))
    assert e.value.code == "hedge_mode" and "hedge mode" in str(e.value) and not venue.orders
