"""Bybit v5 USDT perpetuals ("linear"), one-way mode, isolated margin: the futures agent's backup venue.

SDK decision: **pybit** (``pybit.unified_trading.HTTP``, 5.17), Bybit's own Python SDK, made safe as follows
(checked in ``site-packages/pybit/_http_manager.py`` of pybit 5.17.0):

- Base URL: ``__post_init__`` builds ``https://api{-testnet}.bybit.com`` into the plain instance attribute
  ``self.endpoint`` and every endpoint method builds ``f"{self.endpoint}{path}"`` at call time, so we set
  ``endpoint`` to our ``base_url`` after construction (testnet, demo, or the tests' ``http://127.0.0.1:PORT``).
- Retries: ``_submit_request`` loops ``max_retries`` times; it retries a response whose ``retCode`` is in
  ``retry_codes`` (default ``{10002, 10006, 30034, 30035, 130035, 130150}``: it would *re-send an order POST*
  on 10002 with a larger recv_window, or sleep and re-send on 10006), and on network errors / bad JSON only
  when ``force_retry``. Passing ``retry_codes=set()`` does not work (an empty set is replaced by the
  default), so after construction we set ``retry_codes = set()``, and also ``max_retries=1``,
  ``force_retry=False``: every call sends exactly one request. urllib3 underneath does not retry either
  (requests' ``HTTPAdapter`` uses ``Retry(0, read=False)``). The tests count the create POSTs per orderLinkId.
- Clock: pybit stamps ``X-BAPI-TIMESTAMP`` with the local clock (``_helpers.generate_timestamp``); we
  subclass ``HTTP`` and override ``_prepare_headers`` to stamp with our clock plus the offset measured by
  :meth:`BybitFuturesClient.sync_time`, and sign with pybit's own ``_auth`` (HMAC-SHA256 of
  timestamp + key + recvWindow + query string / JSON body).
- Errors: pybit raises ``InvalidRequestError`` (retCode != 0, ``status_code`` = retCode),
  ``FailedRequestError`` (HTTP status != 200, or undecodable JSON as status 409), ``PermissionError``
  (no keys) and lets ``requests`` exceptions through; all are translated to the typed errors of
  :mod:`tracer.execution.venue` here, and no SDK text that could carry request headers is put in them.
  pybit never logs headers unless ``log_requests=True`` (not used).

Protective stops are conditional Market orders (``triggerPrice``, ``triggerDirection``, ``triggerBy=MarkPrice``,
``reduceOnly``, ``orderLinkId``): they are ordinary orders, findable and cancellable by our client id.

Margin mode: a Unified Trading Account answers 100028 at ``/v5/position/switch-isolated`` and sets isolated margin
for the whole account with ``/v5/account/set-margin-mode`` (ISOLATED_MARGIN), only when ``/v5/account/info``
does not already say ISOLATED_MARGIN. A classic account (the switch succeeds, or 110026 "not modified") is refused
before any entry: its wallet and funding are not where a Unified account's are, and Bybit has upgraded accounts
to the Unified one. Leverage: ``set-leverage``
(110043 "not modified" = already so).

Order lookup: ``/v5/order/history`` may lag a freshly finished order ("order creation/cancellation is
asynchronous, the data returned from this endpoint may delay"), so :meth:`get_order` asks
``/v5/order/realtime`` first: queried by ``orderLinkId`` it ignores ``openOnly`` and also returns the most recent
500 closed orders of the account (Filled, Cancelled...). Only after a Bybit restart, which empties that cache, can
a just-finished order be briefly missing from both (None; the VenueBroker re-queries). History answers 7 days
without a range: a miss asks the weeks before. Fills: by symbol over the order's time range, picked by orderId (an
orderId makes the list ignore all else, times too). Realised P&L per fill is ``execPnl`` when Bybit sends it, else
0. The venue's own closes (a liquidation, auto-deleveraging, a delisting) are read from the execution list's
``execType`` (BustTrade, AdlTrade, Delivery; "Enums": execType), at most 7 days per query.

Error codes read as (v5 "Error Codes", UTA table): 10006 (UID rate limit), 10018 (IP rate limit, listed as
retired but still handled) and 429 ("high server load, please retry") -> :class:`RateLimited`, nothing done;
10009 "IP has been banned" -> :class:`IpBanned` (30 minutes: the rate-limit page's "usually 30 minutes");
110072 "OrderLinkedID is duplicate" (``orderLinkId`` is "always unique" for perps, live or finished) ->
:class:`DuplicateClientId`; 110092/110093 (trigger price already crossed) -> :class:`OrderRejected` worded
"would immediately trigger", the VenueBroker's cue to exit at market.
"""
from __future__ import annotations

import functools
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Callable

import requests
import urllib3.exceptions
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP

from tracer.execution.broker import VenueRules
from tracer.execution.venue import (
    Ambiguous, AuthError, DuplicateClientId, ForcedClose, FundingPayment, InsufficientMargin, IpBanned, OrderRejected, OrderSpec,
    RateLimited, TimestampDrift, VenueBalance, VenueError, VenueFill, VenueOrder, VenueOrderType, VenuePosition,
    VenueUnavailable, is_test_url,
)
from tracer.execution.venues.fields import finite, utc_from_ms
from tracer.models import OrderState, PositionSide, Side
from tracer.symbols import binance_symbol

CATEGORY = "linear"
SETTLE = "USDT"
# executions the venue made itself to close a position: liquidation takeover, auto-deleveraging, and a delisting
# ("Delivery": "Position closed by contract delisted"), booked as a settlement at its price and fee
FORCED_EXEC_TYPES = {"BustTrade": ForcedClose.LIQUIDATION, "AdlTrade": ForcedClose.ADL,
                     "Delivery": ForcedClose.SETTLEMENT}
WEEK_MS = 7 * 86_400_000          # the most the order history and the execution list answer per query
# how far back a lookup that missed asks the order history, a week per query: an agent down for a month still
# finds the stop that closed its position; beyond it the position's trades on the venue tell what closed it
ORDER_HISTORY_WEEKS = 5
RATE_LIMIT_DEFAULT_S = 1.0        # 10006 / 429 without a reset header
IP_LIMIT_DEFAULT_S = 600.0        # HTTP 403 "access too frequent": Bybit lifts an IP limit after 10 minutes
IP_BAN_S = 1800.0                 # 10009: "your IP will be banned for a set period of time (usually 30 minutes)"

AUTH_CODES = {10003, 10004, 10005, 10007, 10010, 33004, -2015}
RATE_CODES = {10006: RATE_LIMIT_DEFAULT_S, 10018: IP_LIMIT_DEFAULT_S, 429: RATE_LIMIT_DEFAULT_S}
TRIGGER_CROSSED_CODES = {110092, 110093}    # "expect Rising/Falling, but trigger_price[..] <= / >= current[..]"
MARGIN_CODES = {110004, 110006, 110007, 110012, 110044, 110045}
AMBIGUOUS_CODES = {10000, 10016, 10019}   # server timeout / internal error: may or may not have happened
NOT_FOUND_CODES = {110001, 110008, 110010}  # order does not exist / finished / already cancelled

_STATES = {
    "Created": OrderState.SUBMITTED, "New": OrderState.SUBMITTED, "Untriggered": OrderState.SUBMITTED,
    "Triggered": OrderState.SUBMITTED, "Active": OrderState.SUBMITTED,
    "PartiallyFilled": OrderState.PARTIALLY_FILLED, "Filled": OrderState.FILLED,
    "Cancelled": OrderState.CANCELED, "PartiallyFilledCanceled": OrderState.CANCELED,
    "Deactivated": OrderState.CANCELED, "Rejected": OrderState.REJECTED,
}


class _HTTP(HTTP):
    """pybit's HTTP, stamping requests with the client's (synced) clock instead of the local one."""

    now_ms: Callable[[], int]

    def _prepare_headers(self, payload, recv_window, content_type="application/json"):  # noqa: ANN001
        timestamp = self.now_ms()
        signature = self._auth(payload=payload, recv_window=recv_window, timestamp=timestamp)
        return {
            "Content-Type": content_type,
            "X-BAPI-API-KEY": self.api_key,
            "X-BAPI-SIGN": signature,
            "X-BAPI-SIGN-TYPE": "2",
            "X-BAPI-TIMESTAMP": str(timestamp),
            "X-BAPI-RECV-WINDOW": str(recv_window),
        }


def venue_symbol(symbol: str) -> str:
    return binance_symbol(symbol)                       # BTC/USD -> BTCUSDT


def our_symbol(vs: str) -> str:
    return f"{vs[:-len(SETTLE)]}/USD" if vs.endswith(SETTLE) else vs


_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError, OSError)


def _typed(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A public client method whose reading of the venue's answer fails (a field missing, of the wrong type,
    not a finite number) raises :class:`Ambiguous`: only typed venue errors leave the client."""
    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(self, *args, **kw)
        except _MALFORMED as e:
            raise Ambiguous(f"bybit {fn.__name__}: unexpected response ({type(e).__name__}: {str(e)[:160]})") \
                from None
    return wrapper


def fmt_step(x: float, step: float) -> str:
    """``x`` snapped to the nearest multiple of ``step``, as an exact decimal string (``0.015`` @ 0.001)."""
    d_step = Decimal(str(step)).normalize()
    q = (Decimal(repr(float(x))) / d_step).to_integral_value(ROUND_HALF_EVEN) * d_step
    return format(q.quantize(Decimal(1).scaleb(min(int(d_step.as_tuple().exponent), 0))), "f")


def _refused(e: BaseException) -> bool:
    """True when the connection was never established (refused, DNS, connect timeout): nothing was sent."""
    seen: set[int] = set()
    todo: list[Any] = [e]
    while todo:
        x = todo.pop()
        if not isinstance(x, BaseException) or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, (urllib3.exceptions.NewConnectionError, ConnectionRefusedError,
                          urllib3.exceptions.ConnectTimeoutError, requests.exceptions.ConnectTimeout)):
            return True
        todo.extend([*x.args, getattr(x, "reason", None), x.__cause__, x.__context__])
    return False


class BybitFuturesClient:
    """:class:`tracer.execution.venue.VenueClient` for Bybit v5 linear USDT perpetuals."""

    name = "bybit"
    supports_venue_stops = True
    funding_in_margin = False          # the margin read is positionIM, the initial margin

    def __init__(self, api_key: str, api_secret: str, base_url: str, *, timeout_s: float = 10.0,
                 recv_window_ms: int = 5000, clock: Callable[[], float] | None = None,
                 account_type: str = "UNIFIED"):
        self.base_url = base_url.rstrip("/")
        self.is_test_venue = is_test_url("bybit", self.base_url)
        self.account_type = account_type
        self._clock = clock or time.time
        self._offset_ms = 0.0
        self._rules: dict[str, VenueRules] = {}
        self._http = _HTTP(api_key=api_key, api_secret=api_secret, timeout=timeout_s,
                           recv_window=recv_window_ms, max_retries=1, force_retry=False, retry_delay=0)
        self._http.endpoint = self.base_url     # pybit builds every URL from this attribute at call time
        self._http.retry_codes = set()          # never let pybit re-send anything (see module docstring)
        self._http.max_retries = 1
        self._http.force_retry = False
        self._http.log_requests = False
        self._http.now_ms = self._now_ms

    def __repr__(self) -> str:                  # never shows the keys
        return f"BybitFuturesClient(base_url={self.base_url!r})"

    # --- transport ---------------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._clock() * 1000 + self._offset_ms)

    def _call(self, method: str, what: str, ok_codes: frozenset[int] = frozenset(), **params: Any) -> dict:
        """One SDK call, exactly one HTTP request; returns ``result`` or raises a typed venue error.
        A retCode in ``ok_codes`` returns ``{"_retCode": code}``."""
        fn = getattr(self._http, method)
        try:
            resp = fn(**params)
        except InvalidRequestError as e:
            code = e.status_code
            if type(code) is not int or abs(code) >= 10 ** 9 or not isinstance(e.message, str):
                # not a Bybit error code (a retCode of "abc", NaN, 1e400 ...): an unreadable answer, not a
                # definite reject; the request may have been processed
                raise Ambiguous(f"bybit {what}: unreadable retCode {str(code)[:40]!r}") from None
            if code in ok_codes:
                return {"_retCode": code}
            raise self._ret_error(code, str(e.message), e.resp_headers, what) from None
        except FailedRequestError as e:
            raise self._http_error(e.status_code, e.resp_headers, what) from None
        except PermissionError:
            raise AuthError(f"bybit {what}: API key and secret are required") from None
        except requests.exceptions.RequestException as e:
            if _refused(e):
                raise VenueUnavailable(f"bybit {what}: cannot connect ({type(e).__name__})") from None
            if isinstance(e, requests.exceptions.Timeout):
                raise Ambiguous(f"bybit {what}: timed out after the request was sent") from None
            raise Ambiguous(f"bybit {what}: connection lost ({type(e).__name__})") from None
        except Exception as e:  # anything else from the SDK: we cannot know whether it reached the venue
            raise Ambiguous(f"bybit {what}: {type(e).__name__}") from None
        if not isinstance(resp, dict):
            raise Ambiguous(f"bybit {what}: unexpected response")
        result = resp.get("result") or {}
        if not isinstance(result, dict):
            raise Ambiguous(f"bybit {what}: unexpected result {type(result).__name__}")
        return result

    def _ret_error(self, code: Any, msg: str, headers: Any, what: str) -> VenueError:
        if code == 10004 and "origin_string" in msg:  # Bybit echoes the signed string (with the API key)
            msg = msg.split("origin_string")[0].rstrip(" .,[")
        for secret in (self._http.api_key, self._http.api_secret):
            if secret:
                msg = msg.replace(secret, "***")
        text = f"bybit {what}: {msg} (retCode {code})"
        if code in RATE_CODES:              # refused before processing: nothing to reconcile, retry later
            wait = self._reset_after(headers, RATE_CODES[code])
            if code == 10018:               # the reset header is the UID limit's; an IP limit lasts longer
                wait = max(wait, IP_LIMIT_DEFAULT_S)
            return RateLimited(text, retry_after_s=wait, used_weight=self._used(headers), code=code, status=200)
        if code == 10009:
            until = datetime.now(timezone.utc) + timedelta(seconds=IP_BAN_S)
            return IpBanned(text, until=until, code=code, status=200)
        if code == 110072:
            return DuplicateClientId(text, code=code, status=200)
        if code in TRIGGER_CROSSED_CODES:   # the broker's cue (Binance -2021's wording) to exit at market now
            return OrderRejected(f"bybit {what}: stop would immediately trigger: {msg} (retCode {code})",
                                 code=code, status=200)
        if code == 10001 and "position idx" in msg.lower():    # our orders are one-way's (positionIdx 0)
            return OrderRejected(f"bybit {what}: the symbol is in hedge mode (both sides); the agent trades in one-way "
                                 "mode: switch it in Bybit's derivatives settings (Position Mode: One-Way Mode): "
                                 f"{msg} (retCode {code})", code="hedge_mode", status=200)
        if code == 10002:
            return TimestampDrift(text, code=code, status=200)
        if code in AUTH_CODES:
            return AuthError(text, code=code, status=200)
        if code in MARGIN_CODES:
            return InsufficientMargin(text, code=code, status=200)
        if code in AMBIGUOUS_CODES:
            return Ambiguous(text, code=code, status=200)
        return OrderRejected(text, code=code, status=200)

    def _http_error(self, status: Any, headers: Any, what: str) -> VenueError:
        if status in (403, 429):
            default = IP_LIMIT_DEFAULT_S if status == 403 else RATE_LIMIT_DEFAULT_S
            return RateLimited(f"bybit {what}: HTTP {status} access too frequent",
                               retry_after_s=self._reset_after(headers, default), used_weight=self._used(headers),
                               status=status)
        if status == 401:
            return AuthError(f"bybit {what}: HTTP 401 unauthorized", status=401)
        if status == 409 and headers is None:   # pybit: the body was not JSON
            return Ambiguous(f"bybit {what}: undecodable response", status=None)
        if isinstance(status, int) and status >= 500:
            return Ambiguous(f"bybit {what}: HTTP {status}", status=status)
        return VenueError(f"bybit {what}: HTTP {status}", status=status if isinstance(status, int) else None)

    def _reset_after(self, headers: Any, default: float) -> float:
        try:
            reset_ms = int((headers or {}).get("X-Bapi-Limit-Reset-Timestamp"))
        except (TypeError, ValueError):
            return default
        return max(0.0, (reset_ms - self._now_ms()) / 1000.0) or default

    @staticmethod
    def _used(headers: Any) -> int | None:
        try:
            return int(headers["X-Bapi-Limit"]) - int(headers["X-Bapi-Limit-Status"])
        except (TypeError, KeyError, ValueError):
            return None

    def _pages(self, method: str, what: str, key: str = "list", max_pages: int = 50, **params: Any) -> list[dict]:
        out: list[dict] = []
        cursor = None
        for _ in range(max_pages):
            res = self._call(method, what, **params, **({"cursor": cursor} if cursor else {}))
            out.extend(res.get(key) or [])
            cursor = res.get("nextPageCursor")
            if not cursor:
                break
        return out

    # --- time ---------------------------------------------------------------------------------------
    @_typed
    def _server_ms(self) -> int:
        res = self._call("get_server_time", "server time")
        if res.get("timeNano"):
            return int(res["timeNano"]) // 1_000_000
        return int(res["timeSecond"]) * 1000

    @_typed
    def server_time(self) -> datetime:
        return datetime.fromtimestamp(self._server_ms() / 1000, tz=timezone.utc)

    @_typed
    def sync_time(self) -> float:
        t0 = self._clock()
        srv = self._server_ms()
        t1 = self._clock()
        offset = srv - (t0 + t1) / 2 * 1000
        if not abs(offset) <= 366 * 86_400_000:     # a year off (or not a number): a broken answer, not a clock
            raise ValueError(f"implausible server time offset {offset} ms")
        self._offset_ms = offset
        return self._offset_ms

    # --- rules --------------------------------------------------------------------------------------
    @_typed
    def rules(self, symbol: str) -> VenueRules:
        vs = venue_symbol(symbol)
        if vs not in self._rules:
            res = self._call("get_instruments_info", "instruments-info", category=CATEGORY, symbol=vs)
            items = [i for i in res.get("list") or [] if i.get("symbol") == vs]
            if not items:
                raise OrderRejected(f"bybit: unknown symbol {vs}", code="unknown_symbol")
            i = items[0]
            pf, lf = i.get("priceFilter") or {}, i.get("lotSizeFilter") or {}
            r = VenueRules(tick_size=finite(pf.get("tickSize")), step_size=finite(lf.get("qtyStep")),
                           min_qty=finite(lf.get("minOrderQty")), min_notional=finite(lf.get("minNotionalValue")))
            if r.tick_size <= 0 or r.step_size <= 0:
                raise ValueError(f"unusable filters: tick {r.tick_size}, step {r.step_size}")
            self._rules[vs] = r
        return self._rules[vs]

    # --- orders -------------------------------------------------------------------------------------
    @staticmethod
    def _trigger_direction(spec: OrderSpec) -> int:
        """1: triggers when the price rises to it, 2: when it falls. A sell stop (long's) falls; a sell
        take-profit rises; a buy stop (short's) rises; a buy take-profit falls."""
        stop = spec.type is VenueOrderType.STOP_MARKET
        if spec.side is Side.SELL:
            return 2 if stop else 1
        return 1 if stop else 2

    @_typed
    def place_order(self, spec: OrderSpec) -> VenueOrder:
        vs = venue_symbol(spec.symbol)
        r = self.rules(spec.symbol)
        params: dict[str, Any] = {
            "category": CATEGORY, "symbol": vs, "side": "Buy" if spec.side is Side.BUY else "Sell",
            "orderType": "Market", "qty": fmt_step(spec.qty, r.step_size), "orderLinkId": spec.client_order_id,
            "positionIdx": 0,
        }
        conditional = spec.type in (VenueOrderType.STOP_MARKET, VenueOrderType.TAKE_PROFIT_MARKET)
        if conditional:
            if spec.stop_price is None:
                raise OrderRejected(f"bybit: {spec.type.value} needs a stop_price", code="no_stop_price")
            params.update(triggerPrice=fmt_step(spec.stop_price, r.tick_size),
                          triggerDirection=self._trigger_direction(spec), triggerBy="MarkPrice", reduceOnly=True)
        elif spec.reduce_only:
            params["reduceOnly"] = True
        try:
            res = self._call("place_order", f"create order {spec.client_order_id}", **params)
        except VenueError as e:
            if type(e) is VenueError:           # an unclassified HTTP status (an HTML 400/404 page): the order
                raise Ambiguous(str(e), status=e.status) from None   # may exist, so never a definite reject
            raise
        venue_id = str(res.get("orderId") or "")
        try:
            got = self.get_order(spec.symbol, spec.client_order_id)
        except VenueError:
            got = None                          # accepted for sure; its state is for the next query
        if got is not None:
            return got
        return VenueOrder(client_order_id=spec.client_order_id, symbol=spec.symbol, side=spec.side, qty=spec.qty,
                          filled_qty=0.0, avg_price=None, state=OrderState.SUBMITTED, type=spec.type,
                          reduce_only=spec.reduce_only or conditional, stop_price=spec.stop_price,
                          venue_order_id=venue_id, updated_at=None)

    def _order(self, o: dict) -> VenueOrder:
        side = Side.BUY if o.get("side") == "Buy" else Side.SELL
        trigger = finite(o.get("triggerPrice"))
        if trigger > 0:
            rising = str(o.get("triggerDirection")) == "1"
            stop = (side is Side.SELL and not rising) or (side is Side.BUY and rising)
            otype = VenueOrderType.STOP_MARKET if stop else VenueOrderType.TAKE_PROFIT_MARKET
        else:
            otype = VenueOrderType.MARKET
        state = _STATES.get(str(o.get("orderStatus")), OrderState.SUBMITTED)
        reason = None
        if state in (OrderState.CANCELED, OrderState.REJECTED):
            rr = o.get("rejectReason")
            reason = rr if rr and rr != "EC_NoError" else (o.get("cancelType") or str(o.get("orderStatus")))
        avg = finite(o.get("avgPrice"))
        return VenueOrder(
            client_order_id=str(o.get("orderLinkId") or ""), symbol=our_symbol(str(o.get("symbol"))), side=side,
            qty=finite(o.get("qty")), filled_qty=finite(o.get("cumExecQty")), avg_price=avg if avg > 0 else None,
            state=state, type=otype, reduce_only=bool(o.get("reduceOnly")),
            stop_price=trigger if trigger > 0 else None, venue_order_id=str(o.get("orderId") or ""),
            updated_at=utc_from_ms(o.get("updatedTime")), reason=reason,
            triggered=str(o.get("orderStatus")) == "Triggered")

    @_typed
    def get_order(self, symbol: str, client_order_id: str, conditional: bool | None = None) -> VenueOrder | None:
        raw = self._raw_order(symbol, client_order_id)
        return None if raw is None else self._order(raw)

    def _raw_order(self, symbol: str, client_order_id: str) -> dict | None:
        vs, now = venue_symbol(symbol), self._now_ms()
        # history without a range answers the past 7 days only ("If not passed, query the past 7 days data by
        # default"): when realtime (emptied by a Bybit restart) and that miss, the weeks before, one per query
        asks: list[tuple[str, dict[str, Any]]] = [("get_open_orders", {}), ("get_order_history", {})] + [
            ("get_order_history", {"startTime": end - WEEK_MS + 1, "endTime": end})
            for end in (now - k * WEEK_MS + 60_000 for k in range(1, ORDER_HISTORY_WEEKS))]
        for method, span in asks:
            res = self._call(method, f"query order {client_order_id}", category=CATEGORY, symbol=vs,
                             orderLinkId=client_order_id, **span)
            for o in res.get("list") or []:
                if o.get("orderLinkId") == client_order_id:
                    return o
        return None

    @_typed
    def cancel_order(self, symbol: str, client_order_id: str, conditional: bool | None = None) -> VenueOrder | None:
        self._call("cancel_order", f"cancel order {client_order_id}", ok_codes=frozenset(NOT_FOUND_CODES),
                         category=CATEGORY, symbol=venue_symbol(symbol), orderLinkId=client_order_id)
        # cancelled now, or too late (110001...): the venue's view of the order, so that a stop that
        # already filled reads FILLED; None when the venue never saw it
        return self.get_order(symbol, client_order_id)

    @_typed
    def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        where = {"symbol": venue_symbol(symbol)} if symbol else {"settleCoin": SETTLE}
        rows = self._pages("get_open_orders", "open orders", category=CATEGORY, openOnly=0, limit=50, **where)
        return [self._order(o) for o in rows]

    @_typed
    def fills(self, symbol: str, client_order_id: str, conditional: bool | None = None) -> list[VenueFill]:
        raw = self._raw_order(symbol, client_order_id)
        if raw is None or not raw.get("orderId"):
            return []
        what, oid = f"executions {client_order_id}", str(raw["orderId"])
        t0, t1 = int(raw.get("createdTime") or 0), int(raw.get("updatedTime") or 0)
        if t0 > 0:
            # "startTime and endTime are not passed, return 7 days by default" (v5 "Get Trade History"), and an
            # orderId makes it ignore "other input parameters", the times too: asked by symbol over the order's
            # own time range, in 7-day slices, and picked by orderId here
            rows = [e for e in self._executions(what, venue_symbol(symbol), t0 - 60_000, max(t0, t1) + 60_000)
                    if str(e.get("orderId")) == oid]
        else:
            rows = self._pages("get_executions", what, category=CATEGORY, symbol=venue_symbol(symbol),
                               orderId=oid, limit=100)
        out = [self._fill(e, client_order_id, symbol) for e in rows if e.get("execType") in (None, "Trade", "BustTrade")]
        return sorted(out, key=lambda f: f.ts)

    @_typed
    def outside_fills(self, symbol: str, since: datetime, ours: dict[str, bool]) -> list[VenueFill]:
        """The account's executions of ``symbol`` since ``since`` of orders whose ``orderLinkId`` is not one of
        ``ours`` (a close by hand; a liquidation, auto-deleveraging or delisting with its ``reason``), with fees."""
        vs = venue_symbol(symbol)
        rows = self._executions(f"outside fills {vs}", vs, int(since.timestamp() * 1000), self._now_ms() + 60_000)
        kinds = {"Trade": None, **{k: v.value for k, v in FORCED_EXEC_TYPES.items()}}
        return sorted((replace(self._fill(e, str(e.get("orderLinkId") or ""), symbol), reason=kinds[e["execType"]])
                       for e in rows if e.get("execType") in kinds and str(e.get("orderLinkId") or "") not in ours),
                      key=lambda f: f.ts)

    def _executions(self, what: str, vs: str, start_ms: int, end_ms: int, **params: Any) -> list[dict]:
        """The execution list in [start_ms, end_ms], in slices of at most 7 days ("endTime - startTime <= 7 days")."""
        out: dict[str, dict] = {}
        end_ms = min(end_ms, self._now_ms() + 60_000)
        while start_ms <= end_ms:
            stop_ms = min(end_ms, start_ms + 7 * 86_400_000 - 1)
            for e in self._pages("get_executions", what, category=CATEGORY, symbol=vs, limit=100,
                                 startTime=start_ms, endTime=stop_ms, **params):
                out[str(e.get("execId"))] = e
            start_ms = stop_ms + 1
        return list(out.values())

    @staticmethod
    def _fill(e: dict, client_order_id: str, symbol: str) -> VenueFill:
        return VenueFill(
            client_order_id=client_order_id, symbol=symbol, side=Side.BUY if e.get("side") == "Buy" else Side.SELL,
            qty=finite(e.get("execQty")), price=finite(e.get("execPrice")), fee=finite(e.get("execFee")),
            ts=utc_from_ms(e.get("execTime")) or datetime.now(timezone.utc), trade_id=str(e.get("execId")),
            realized_pnl=finite(e.get("execPnl")), order_id=str(e.get("orderId") or ""))

    @_typed
    def forced_closes(self, symbol: str, since: datetime) -> list[VenueOrder]:
        """The venue's own closes of our positions since ``since``: liquidations (``execType`` BustTrade),
        auto-deleveraging (AdlTrade) and delistings (Delivery) in ``/v5/execution/list``, one per venue order, the
        latest first. The list answers at most 7 days per query, so a longer span is asked in 7-day slices."""
        vs = venue_symbol(symbol)
        end = datetime.fromtimestamp(self._now_ms() / 1000, tz=timezone.utc)
        start = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
        by_order: dict[str, list[dict]] = {}
        while start < end:
            stop = min(end, start + timedelta(days=7) - timedelta(milliseconds=1))
            rows = self._pages("get_executions", f"forced closes {vs}", category=CATEGORY, symbol=vs, limit=100,
                               startTime=int(start.timestamp() * 1000), endTime=int(stop.timestamp() * 1000))
            for e in rows:
                if e.get("execType") in FORCED_EXEC_TYPES:
                    by_order.setdefault(str(e.get("orderId") or e.get("execId")), []).append(e)
            start = stop + timedelta(milliseconds=1)
        out = []
        for oid, execs in by_order.items():
            qty = sum(finite(e.get("execQty")) for e in execs)
            value = sum(finite(e.get("execQty")) * finite(e.get("execPrice")) for e in execs)
            out.append(VenueOrder(
                client_order_id=str(execs[0].get("orderLinkId") or ""), symbol=symbol,
                side=Side.BUY if execs[0].get("side") == "Buy" else Side.SELL, qty=qty, filled_qty=qty,
                avg_price=value / qty if qty > 0 else None, state=OrderState.FILLED, reduce_only=True,
                venue_order_id=oid, updated_at=max((t for e in execs if (t := utc_from_ms(e.get("execTime")))),
                                                   default=None),
                fee=sum(finite(e.get("execFee")) for e in execs),
                reason=FORCED_EXEC_TYPES[execs[0]["execType"]].value))
        return sorted(out, key=lambda o: o.updated_at or since, reverse=True)

    # --- account ------------------------------------------------------------------------------------
    @_typed
    def positions(self) -> list[VenuePosition]:
        rows = self._pages("get_positions", "positions", category=CATEGORY, settleCoin=SETTLE, limit=200)
        out = []
        for p in rows:
            size = finite(p.get("size"))
            if size <= 0 or p.get("side") not in ("Buy", "Sell"):
                continue
            liq = finite(p.get("liqPrice"))
            mark = finite(p.get("markPrice"))
            out.append(VenuePosition(
                symbol=our_symbol(str(p.get("symbol"))),
                side=PositionSide.LONG if p["side"] == "Buy" else PositionSide.SHORT, qty=size,
                entry_price=finite(p.get("avgPrice")), leverage=finite(p.get("leverage"), 1.0),
                liquidation_price=liq if liq > 0 else None,
                margin=finite(p.get("positionIM")) or finite(p.get("positionBalance")),
                unrealized_pnl=finite(p.get("unrealisedPnl")), mark_price=mark if mark > 0 else None))
        return out

    @_typed
    def balance(self) -> VenueBalance:
        res = self._call("get_wallet_balance", "wallet balance", accountType=self.account_type, coin=SETTLE)
        accounts = res.get("list") or []
        acct = accounts[0] if accounts else {}
        coin = next((c for c in acct.get("coin") or [] if c.get("coin") == SETTLE), None)
        if coin is None:
            return VenueBalance(wallet=0.0, available=0.0, equity=0.0)
        wallet = finite(coin.get("walletBalance"))
        if coin.get("availableToWithdraw") not in (None, ""):
            available = finite(coin.get("availableToWithdraw"))
        elif acct.get("totalAvailableBalance") not in (None, ""):
            available = finite(acct.get("totalAvailableBalance"))
        else:
            available = wallet - finite(coin.get("totalPositionIM")) - finite(coin.get("totalOrderIM"))
        return VenueBalance(wallet=wallet, available=available, equity=finite(coin.get("equity"), wallet))

    @_typed
    def prepare_symbol(self, symbol: str, leverage: int) -> None:
        vs, lev = venue_symbol(symbol), str(int(leverage))
        res = self._call("switch_margin_mode", f"isolated margin {vs}", ok_codes=frozenset({110026, 100028}),
                         category=CATEGORY, symbol=vs, tradeMode=1, buyLeverage=lev, sellLeverage=lev)
        if res.get("_retCode") != 100028:
            # only a classic account takes a per-symbol switch; Bybit has moved every account to the Unified
            # Trading Account (its classic-account endpoints are in the docs' "abandon" section), and a classic
            # account's wallet and funding are read elsewhere: no position is opened that the agent cannot account
            raise OrderRejected("bybit: this is a classic account; the agent trades only a Unified Trading Account "
                                "(upgrade it in Bybit's app: Account > Unified Trading Account)",
                                code="classic_account")
        # a Unified account: margin mode is account-wide
        info = self._call("get_account_info", "account info")
        if info.get("marginMode") != "ISOLATED_MARGIN":
            self._call("set_margin_mode", "set margin mode", setMarginMode="ISOLATED_MARGIN")
        self._call("set_leverage", f"leverage {vs}", ok_codes=frozenset({110043}),
                   category=CATEGORY, symbol=vs, buyLeverage=lev, sellLeverage=lev)

    @_typed
    def funding(self, symbol: str, since: datetime) -> list[FundingPayment]:
        vs = venue_symbol(symbol)
        end = datetime.fromtimestamp(self._now_ms() / 1000, tz=timezone.utc)
        start = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
        out: dict[str, FundingPayment] = {}
        while start < end:                      # Bybit: at most 7 days per query
            stop = min(end, start + timedelta(days=7) - timedelta(milliseconds=1))
            rows = self._pages("get_transaction_log", "funding", accountType=self.account_type, category=CATEGORY,
                               currency=SETTLE, type="SETTLEMENT", limit=50,
                               startTime=int(start.timestamp() * 1000), endTime=int(stop.timestamp() * 1000))
            for t in rows:
                if t.get("symbol") != vs:
                    continue
                received = finite(t.get("funding")) if t.get("funding") not in (None, "") else finite(t.get("change"))
                out[str(t.get("id"))] = FundingPayment(symbol=symbol, ts=utc_from_ms(t.get("transactionTime")) or stop,
                                                       amount=-received,   # Bybit: positive = received
                                                       ref=str(t.get("id")))
            start = stop + timedelta(milliseconds=1)
        return sorted(out.values(), key=lambda f: f.ts)
