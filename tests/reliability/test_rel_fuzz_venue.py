"""Reliability (issue 10): malformed venue JSON fuzzed through the real SDK clients.

The fake venues (Binance USD-M, Alpaca, Bybit) process every request for real (an order POST books the
order); a wrapper around the fake's ``handle`` then replaces the answer of ONE endpoint with a
hypothesis-generated malformation of the real answer: JSON cut short, leaves retyped (strings where
numbers are, ``NaN``/``Infinity`` tokens, ``"1e999"``, 400-digit numbers, nested junk, nulls), keys
dropped, the body wrapped in extra nesting, an HTML error page or an empty body (status 200, 4xx or 5xx).

Checked for every call the agents make (place_order, get_order, positions, balance, rules, fills):

* only typed :class:`tracer.execution.venue.VenueError` subclasses escape a client (never a KeyError,
  TypeError, ValueError, JSONDecodeError, OverflowError ...);
* what a client does return holds only finite numbers (a NaN quantity or an infinite price must never
  reach the broker: it is an error of the venue's answer, i.e. ``Ambiguous``);
* a malformed answer to an order POST is ``Ambiguous`` (the order may exist: it is looked up by client
  order id, never taken as a definite reject), unless the malformed body still is a well-formed venue
  error (an integer error code with a message), which is the venue's own reject.

Reproduce: hypothesis runs derandomized (same examples every run); a failure prints the drawn body.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes.alpaca_trading import FakeAlpacaTrading
from fakes.binance_futures_venue import FakeBinanceFutures
from fakes.bybit_venue import FakeBybit
from tracer.execution.broker import VenueRules
from tracer.execution.venue import (Ambiguous, OrderSpec, VenueBalance, VenueError, VenueFill, VenueOrder,
                                    VenuePosition)
from tracer.execution.venues.alpaca import AlpacaSpotClient
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from tracer.execution.venues.bybit import BybitFuturesClient
from tracer.models import Side

N_DEFAULT = 12
N_LONG = 70
KEY, SECRET = "fuzz-key-0001", "fuzz-secret-0123456789"
BTC = "BTC/USD"
_cids = itertools.count(1)

# --------------------------------------------------------------------------- malformed bodies

_JUNK_LEAVES = st.sampled_from([
    "abc", "", "NaN", "nan", "Infinity", "-Infinity", "1e999", "-1e999", "9" * 400, "0x1F", "1,000.5",
    None, True, False, [], {}, [1, 2], {"x": {"y": [None]}}, float("nan"), float("inf"), -float("inf"),
    10 ** 400, -(10 ** 30), 1.5e308, -0.0, "\u202e\u0000", "<b>1</b>",
])


@dataclass
class Mutation:
    kind: str                      # truncate / html / empty / retype / drop / nest / huge
    status: int = 200
    cut: float = 0.5               # truncate: fraction of the body kept
    picks: tuple = ()              # retype / drop / huge: (index, junk) choices applied to the leaves
    wrap: int = 0                  # nest: which wrapper

    def short(self) -> str:
        return f"{self.kind}/{self.status}/{self.cut:.2f}/{self.picks!r:.200}/{self.wrap}"


MUTATIONS = st.one_of(
    st.builds(Mutation, kind=st.just("truncate"), cut=st.floats(0.0, 0.98)),
    st.builds(Mutation, kind=st.just("html"), status=st.sampled_from([200, 400, 404, 500, 502, 503])),
    st.builds(Mutation, kind=st.just("empty"), status=st.sampled_from([200, 400, 500])),
    st.builds(Mutation, kind=st.just("retype"),
              picks=st.lists(st.tuples(st.integers(0, 10 ** 6), _JUNK_LEAVES), min_size=1, max_size=5).map(tuple)),
    st.builds(Mutation, kind=st.just("drop"),
              picks=st.lists(st.tuples(st.integers(0, 10 ** 6), st.none()), min_size=1, max_size=4).map(tuple)),
    st.builds(Mutation, kind=st.just("huge"),
              picks=st.lists(st.tuples(st.integers(0, 10 ** 6),
                                       st.sampled_from(["1e999", 10 ** 400, "9" * 400, 1.7e308, -1.7e308])),
                             min_size=1, max_size=6).map(tuple)),
    st.builds(Mutation, kind=st.just("nest"), wrap=st.integers(0, 3)),
)


def _paths(x: Any, prefix: tuple = ()) -> list[tuple]:
    """Paths to every value (containers included) below the root."""
    out: list[tuple] = []
    if isinstance(x, dict):
        for k, v in x.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


def _leaf_paths(x: Any) -> list[tuple]:
    ps = _paths(x)
    return [p for p in ps if not isinstance(_get(x, p), (dict, list))] or ps


def _get(x: Any, path: tuple) -> Any:
    for k in path:
        x = x[k]
    return x


def _set(x: Any, path: tuple, v: Any) -> None:
    _get(x, path[:-1])[path[-1]] = v


def _drop(x: Any, path: tuple) -> None:
    parent = _get(x, path[:-1])
    del parent[path[-1]]


def mutate(m: Mutation, status: int, payload: Any) -> tuple[int, dict[str, str], Any]:
    """The malformed answer (status, headers, body bytes) made from the real one."""
    j = {"Content-Type": "application/json"}
    if isinstance(payload, (bytes, str)):          # an error page of the fake itself: keep it, malformed
        payload = {"raw": payload if isinstance(payload, str) else payload.decode("utf-8", "replace")}
    text = json.dumps(payload)
    if m.kind == "truncate":
        return 200, j, text[: int(len(text) * m.cut)].encode()
    if m.kind == "html":
        return m.status, {"Content-Type": "text/html"}, \
            f"<html><head><title>{m.status}</title></head><body><h1>Error {m.status}</h1></body></html>".encode()
    if m.kind == "empty":
        return m.status, j, b""
    body = json.loads(text)
    if m.kind == "nest":
        body = [{"data": body}, [body], {"result": {"data": body}}, {"list": [[body]]}][m.wrap]
        return status, j, json.dumps(body).encode()
    for idx, junk in m.picks:
        ps = _leaf_paths(body) if m.kind in ("retype", "huge") else _paths(body)
        if not ps:
            break
        p = ps[idx % len(ps)]
        if m.kind == "drop":
            _drop(body, p)
        else:
            _set(body, p, junk)
    return status, j, json.dumps(body, allow_nan=True).encode()     # NaN / Infinity tokens on purpose


def well_formed_reject(status: int, body: bytes) -> bool:
    """The malformed answer still is a venue's own, well-formed error (an integer code and a message)."""
    try:
        b = json.loads(body)
    except ValueError:
        return False
    if not isinstance(b, dict):
        return False
    for code_key, msg_key in (("code", "msg"), ("retCode", "retMsg"), ("code", "message")):
        c = b.get(code_key)
        if type(c) is int and c != 0 and isinstance(b.get(msg_key), str):
            return status >= 400 or code_key == "retCode"
    return False


class Malformer:
    """Wraps a fake venue's ``handle``: the answers to ``target`` (``"METHOD /path"``) get mutated."""

    def __init__(self, venue: Any):
        self.venue = venue
        self.real = venue.handle
        self.target: str | None = None
        self.mutation: Mutation | None = None
        self.hits = 0
        self.sent: list[tuple[int, bytes]] = []
        venue.handle = self

    def __call__(self, req):
        status, headers, payload = self.real(req)
        if self.mutation is not None and f"{req.method} {req.path}" == self.target:
            self.hits += 1
            status, headers, body = mutate(self.mutation, status, payload)
            self.sent.append((status, body))
            return status, headers, body
        return status, headers, payload


# --------------------------------------------------------------------------- what a client may return

def _fin(x: Any) -> bool:
    return x is None or (isinstance(x, (int, float)) and math.isfinite(x))


def check_result(x: Any) -> None:
    """Every number in a returned value is finite; rules have positive steps."""
    if isinstance(x, list):
        for y in x:
            check_result(y)
        return
    if isinstance(x, VenueOrder):
        assert _fin(x.qty) and _fin(x.filled_qty) and _fin(x.avg_price) and _fin(x.stop_price), x
    elif isinstance(x, VenuePosition):
        assert all(_fin(v) for v in (x.qty, x.entry_price, x.leverage, x.liquidation_price, x.margin,
                                     x.unrealized_pnl, x.mark_price)), x
    elif isinstance(x, VenueBalance):
        assert all(_fin(v) for v in (x.wallet, x.available, x.equity)), x
    elif isinstance(x, VenueRules):
        assert _fin(x.tick_size) and x.tick_size > 0 and _fin(x.step_size) and x.step_size > 0, x
        assert _fin(x.min_qty) and _fin(x.min_notional), x
    elif isinstance(x, VenueFill):
        assert all(_fin(v) for v in (x.qty, x.price, x.fee, x.realized_pnl)), x
    elif isinstance(x, float):              # sync_time: the clock offset in ms
        assert math.isfinite(x), x
    else:
        assert x is None, f"unexpected result {x!r}"


# --------------------------------------------------------------------------- the three venues

@dataclass
class Venue:
    name: str
    fake: Any
    client: Any
    endpoints: dict[str, str]            # call -> "METHOD /path" whose answer is malformed
    forget_rules: Callable[[], None]
    seed_rules: Callable[[], None]


def _spec(cid: str) -> OrderSpec:
    return OrderSpec(client_order_id=cid, symbol=BTC, side=Side.BUY, qty=0.01)


def _binance() -> Venue:
    fake = FakeBinanceFutures(KEY, SECRET).__enter__()
    c = BinanceFuturesClient(KEY, SECRET, fake.url, timeout_s=2.0)
    rules = VenueRules(tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0)
    return Venue("binance", fake, c, {
        "place_order": "POST /fapi/v1/order", "get_order": "GET /fapi/v1/order",
        "positions": "GET /fapi/v2/positionRisk", "balance": "GET /fapi/v2/account",
        "rules": "GET /fapi/v1/exchangeInfo", "fills": "GET /fapi/v1/userTrades", "sync_time": "GET /fapi/v1/time"},
        forget_rules=c._rules.clear, seed_rules=lambda: c._rules.__setitem__("BTCUSDT", rules))


def _alpaca() -> Venue:
    fake = FakeAlpacaTrading(keys=(KEY, SECRET), cash=1_000_000.0).__enter__()
    fake.set_price(BTC, 42000.0)
    c = AlpacaSpotClient(KEY, SECRET, fake.url, timeout_s=2.0)
    return Venue("alpaca", fake, c, {
        "place_order": "POST /v2/orders", "get_order": "GET /v2/orders:by_client_order_id",
        "positions": "GET /v2/positions", "balance": "GET /v2/account",
        "rules": "GET /v2/assets/BTCUSD", "fills": "GET /v2/orders:by_client_order_id",
        "sync_time": "GET /v2/clock"},
        forget_rules=c._steps.clear, seed_rules=lambda: c._steps.__setitem__(BTC, Decimal("0.0001")))


def _bybit() -> Venue:
    fake = FakeBybit(api_key=KEY, api_secret=SECRET, wallet=1_000_000.0).__enter__()
    fake.set_price("BTCUSDT", 42000.0)
    c = BybitFuturesClient(KEY, SECRET, fake.url, timeout_s=2.0)
    rules = VenueRules(tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=5.0)
    return Venue("bybit", fake, c, {
        "place_order": "POST /v5/order/create", "get_order": "GET /v5/order/realtime",
        "positions": "GET /v5/position/list", "balance": "GET /v5/account/wallet-balance",
        "rules": "GET /v5/market/instruments-info", "fills": "GET /v5/execution/list",
        "sync_time": "GET /v5/market/time"},
        forget_rules=c._rules.clear, seed_rules=lambda: c._rules.__setitem__("BTCUSDT", rules))


VENUES = {"binance": _binance, "alpaca": _alpaca, "bybit": _bybit}
CALLS = ("place_order", "get_order", "positions", "balance", "rules", "fills", "sync_time")


def _fuzz_venue(venue_name: str, n_examples: int, reliability) -> None:
    v = VENUES[venue_name]()
    mal = Malformer(v.fake)
    stats = {"run": 0, "typed_errors": 0, "untyped_errors": 0, "orders_ambiguous": 0,
             "orders_definite_reject_from_malformed": 0, "returned": 0}
    failures: list[str] = []
    try:
        # one real, good order first: a position, an order and a fill exist for the reads to return
        v.seed_rules()
        first = f"fz-{venue_name}-seed"
        v.client.place_order(_spec(first))

        for call in CALLS:
            @settings(max_examples=n_examples, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(m=MUTATIONS)
            def one(m: Mutation) -> None:
                stats["run"] += 1
                cid = f"fz-{venue_name}-{next(_cids)}"
                if call == "rules":
                    v.forget_rules()
                else:
                    v.seed_rules()
                mal.target, mal.mutation, mal.sent = v.endpoints[call], m, []
                try:
                    if call == "place_order":
                        out = v.client.place_order(_spec(cid))
                    elif call in ("get_order", "fills"):
                        fn = v.client.get_order if call == "get_order" else v.client.fills
                        out = fn(BTC, first)
                    elif call == "rules":
                        out = v.client.rules(BTC)
                    else:
                        out = getattr(v.client, call)()
                except VenueError as e:
                    stats["typed_errors"] += 1
                    if call == "place_order":
                        definite = not isinstance(e, Ambiguous)
                        if definite and not any(well_formed_reject(s, b) for s, b in mal.sent):
                            stats["orders_definite_reject_from_malformed"] += 1
                            failures.append(f"{venue_name} place_order {m.short()}: {type(e).__name__}: {e}"[:400])
                        else:
                            stats["orders_ambiguous"] += isinstance(e, Ambiguous)
                    return
                except Exception as e:  # noqa: BLE001 - the point of the test
                    stats["untyped_errors"] += 1
                    failures.append(f"{venue_name} {call} {m.short()}: untyped {type(e).__name__}: {e}"[:400])
                    return
                finally:
                    mal.mutation = None
                stats["returned"] += 1
                try:
                    check_result(out)
                except AssertionError as e:
                    failures.append(f"{venue_name} {call} {m.short()}: returned non-finite data: {e}"[:400])

            one()
    finally:
        v.fake.__exit__(None, None, None)
    ok = not failures
    reliability(f"fuzz: malformed venue JSON ({venue_name}){' long' if n_examples > N_DEFAULT else ''}",
                trials=stats["run"], ok=ok, inputs_fuzzed=stats["run"],
                checked="only typed VenueErrors escape; returned values finite; a malformed order answer "
                        "is Ambiguous, never a definite reject",
                calls=",".join(CALLS), endpoint_answers_malformed=mal.hits, **stats,
                failures=len(failures))
    assert ok, "\n".join(failures[:15])


@pytest.mark.parametrize("venue_name", list(VENUES))
def test_malformed_venue_json_raises_only_typed_errors(venue_name, reliability):
    _fuzz_venue(venue_name, N_DEFAULT, reliability)


@pytest.mark.long
@pytest.mark.parametrize("venue_name", list(VENUES))
def test_malformed_venue_json_long(venue_name, reliability):
    _fuzz_venue(venue_name, N_LONG, reliability)
