"""Alpaca crypto spot as a :class:`~tracer.execution.venue.VenueClient`, over alpaca-py's ``TradingClient``.

What this client does to alpaca-py (0.44), and why:

* **No SDK retries.** ``RESTClient._request`` (alpaca/common/rest.py) retries any response whose
  status is in ``DEFAULT_RETRY_EXCEPTION_CODES = [429, 504]`` up to ``DEFAULT_RETRY_ATTEMPTS = 3``
  times, sleeping ``DEFAULT_RETRY_WAIT_SECONDS = 3`` in between (alpaca/common/constants.py) -- for
  POST /v2/orders too, so a 504 whose order *was* booked would be sent again. ``TradingClient``
  does not pass ``retry_attempts`` through, and ``RESTClient`` ignores ``retry_attempts=0`` (it only
  takes values > 0), so the client sets ``_retry = 0`` on the instance: every request is sent exactly
  once and the VenueBroker owns the retry policy (reads retried, orders looked up by client id).
* **A timeout.** ``RESTClient._one_request`` calls ``Session.request`` without ``timeout=``, i.e. it
  would wait forever. The client mounts an ``HTTPAdapter`` on the SDK's session that applies
  ``timeout_s`` to every request (urllib3 retries stay at requests' default of 0).
* **Exact quantities.** alpaca-py's ``OrderRequest.qty`` is a ``float`` (JSON number). The client
  still validates the order with ``MarketOrderRequest`` but posts the body itself through the SDK's
  own ``post("/orders", ...)`` (what ``submit_order`` does) with ``qty`` as the exact decimal string
  at the asset's ``min_trade_increment`` -- the format of Alpaca's documented examples.

Venue facts this client relies on (Alpaca docs "Crypto Orders" / "Crypto Spot Trading"):

* Crypto order types: market, limit, stop_limit; time_in_force: gtc, ioc. Market orders are sent IOC: Alpaca
  turns a market order into a limit order with a price collar, so it can fill partially; IOC cancels the
  remainder (status canceled with filled_qty > 0: a partial fill the VenueBroker books and re-sends the rest
  of) where GTC would leave it resting, holding the coins (or cash) it would trade.
* There is no stop-market for crypto. A stop_limit can gap through its limit and never fill, and it
  holds the coins it would sell (a later market exit is refused "insufficient balance" until it is
  canceled). So ``supports_venue_stops = False``: only MARKET orders are placed (others are refused
  before anything is sent) and the VenueBroker keeps protective exits itself.
* There is no reduce-only for crypto either. A reduce-only SELL is emulated: it is capped at the held
  quantity (GET /v2/positions, floored to the step), since the buy fee leaves less than the entry
  quantity on the account; nothing held -> :class:`OrderRejected`. Held means the position's
  ``qty_available`` ("total number of shares available minus open orders"), falling back to ``qty``: coins
  held by a working sell order cannot be sold again (403 insufficient balance). A reduce-only BUY is refused
  (spot cannot be short).
* Fees: the taker fee (25 bps in the lowest volume tier) is charged in the asset *received*: a buy
  of 0.01 BTC credits 0.01 * (1 - 0.0025) BTC; a sell is credited USD less the fee. The order does not
  report the fee and fee activities (CFEE) are posted later, so :meth:`fills` reports the fee as
  ``filled_qty * filled_avg_price * taker_fee_rate`` in USD (for a buy: the BTC fee valued at the fill
  price). Because of the fee, a position is smaller than the buy that opened it: a reduce-only SELL is
  capped at what is held (see above); what is left under one step is dust that cannot be sold.
* Minimum order value: Alpaca refuses USD-quoted crypto orders under $10 with HTTP 403, code
  40310000, "cost basis must be >= minimal amount of order 10" (reported by several projects; the
  assets endpoint does not publish it). ``rules().min_notional`` is therefore 10 for */USD pairs
  (``min_notional_usd=`` overrides it).
* Symbols: orders and assets use ``BTC/USD`` (ours); positions come back as ``BTCUSD`` and are mapped
  back. Assets are looked up by the legacy ``BTCUSD`` form, which Alpaca keeps for compatibility (a
  ``/`` inside the URL path is not reliably routed).
* Auth is by the ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers (no signed timestamps), so the
  clock offset of :meth:`sync_time` is informative only. ``clock``: local time in epoch seconds
  (default ``time.time``), as the other venue clients take it.
* Errors: 401 -> :class:`AuthError`; 403 is both "not authorized" and a business refusal (code
  40310000: "insufficient balance for BTC ...", "insufficient buying power", "cost basis must be >=
  ...") and is told apart by its message; 422 40010001 "client_order_id must be unique" (any earlier
  order of the account with the id, live or finished) -> :class:`DuplicateClientId`; other 422s (invalid
  qty...) -> :class:`OrderRejected`; 429 -> :class:`RateLimited` from ``Retry-After`` or
  ``X-RateLimit-Reset`` (epoch seconds); 5xx, timeouts, dropped connections -> :class:`Ambiguous`;
  refused / unresolvable / connect timeout -> :class:`VenueUnavailable`.

Secrets: the key pair only ever goes into the SDK's request headers. Error messages carry the HTTP
status, Alpaca's code and message, never headers; they are scrubbed of the key and secret anyway,
and SDK exceptions are neither chained nor kept as context (a ``requests`` exception holds the request,
headers included).
"""
from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any, Callable, TypeVar

import requests
from requests.adapters import HTTPAdapter

from tracer.execution.broker import VenueRules
from tracer.execution.venue import (Ambiguous, AuthError, DuplicateClientId, FundingPayment, InsufficientMargin,
                                    OrderRejected, OrderSpec, RateLimited, VenueBalance, VenueError,
                                    VenueFill, VenueOrder, VenueOrderType, VenuePosition,
                                    VenueUnavailable, is_test_url)
from tracer.models import OrderState, PositionSide, Side

DEFAULT_TAKER_FEE_RATE = 0.0025      # Alpaca crypto, tier 1 (30-day volume < $100k), taker
DEFAULT_MIN_NOTIONAL_USD = 10.0      # "cost basis must be >= minimal amount of order 10"
DEFAULT_RATE_LIMIT_WAIT_S = 60.0     # a 429 with neither Retry-After nor X-RateLimit-Reset
T = TypeVar("T")
_QUOTES = ("USDT", "USDC", "USD", "BTC")   # longest first: BTCUSDT is BTC/USDT, not BTCUS/DT

# Alpaca order status -> ours. Working states (incl. pending_cancel: not canceled yet) are SUBMITTED.
_STATES = {
    "new": OrderState.SUBMITTED, "accepted": OrderState.SUBMITTED, "pending_new": OrderState.SUBMITTED,
    "accepted_for_bidding": OrderState.SUBMITTED, "pending_review": OrderState.SUBMITTED,
    "held": OrderState.SUBMITTED, "stopped": OrderState.SUBMITTED,
    "pending_cancel": OrderState.SUBMITTED, "pending_replace": OrderState.SUBMITTED,
    # "done executing for the day" and "completed for the day (either filled or done for day), settlement
    # calculations pending" (Alpaca's order statuses): ended as far as the agent can act, with what they filled.
    # Crypto trades around the clock: taken as working, a market exit in them would hold off the agent's own
    # stop for ever
    "done_for_day": OrderState.CANCELED, "calculated": OrderState.CANCELED,
    "partially_filled": OrderState.PARTIALLY_FILLED,
    "filled": OrderState.FILLED,
    "canceled": OrderState.CANCELED, "expired": OrderState.CANCELED, "replaced": OrderState.CANCELED,
    "rejected": OrderState.REJECTED, "suspended": OrderState.REJECTED,
}


def to_alpaca(symbol: str) -> str:
    """Ours -> Alpaca's order symbol: the same ``BASE/QUOTE`` (``BTC/USD``)."""
    s = symbol.upper().strip()
    if "/" in s:
        return s
    return from_alpaca(s)


def legacy_symbol(symbol: str) -> str:
    """``BTC/USD`` -> ``BTCUSD``: the form positions use, and the one used in URL paths."""
    return to_alpaca(symbol).replace("/", "")


def from_alpaca(symbol: str) -> str:
    """Alpaca's ``BTCUSD`` (positions) or ``BTC/USD`` (orders, assets) -> ours, ``BTC/USD``."""
    s = (symbol or "").upper().strip()
    if "/" in s:
        return s
    for quote in _QUOTES:
        if s.endswith(quote) and len(s) > len(quote):
            return f"{s[:-len(quote)]}/{quote}"
    return s


def _dec(x: Any) -> Decimal | None:
    if x is None or x == "":
        return None
    try:
        d = Decimal(str(x))
    except (InvalidOperation, ValueError):
        return None
    if not d.is_finite():
        return None
    try:
        return d if math.isfinite(float(d)) else None      # 1e999 is a finite Decimal but no float
    except OverflowError:
        return None


def _f(x: Any, default: float = 0.0) -> float:
    d = _dec(x)
    return float(d) if d is not None else default


def qty_string(qty: float, step: Decimal) -> str:
    """``qty`` as an exact decimal string on the ``step`` grid: float noise (0.30000000000000004, or
    0.0011999999999 for 0.0012) snaps to the nearest step; anything else rounds *down* (never more
    than asked: a sell can never exceed what is held)."""
    q = Decimal(repr(float(qty)))
    if step <= 0:
        out = q
    else:
        n = q / step
        nearest = n.to_integral_value(rounding=ROUND_HALF_EVEN)
        n = nearest if abs(n - nearest) <= Decimal("1e-6") else n.to_integral_value(rounding=ROUND_DOWN)
        out = n * step
    s = format(out.normalize(), "f")
    return "0" if s in ("-0", "") else s


class _TimeoutAdapter(HTTPAdapter):
    """Applies a default timeout to every request of a session (alpaca-py passes none)."""

    def __init__(self, timeout_s: float):
        super().__init__()            # max_retries: requests' default, 0 (never re-sends a request)
        self._timeout = (timeout_s, timeout_s)

    def send(self, request, **kw):    # type: ignore[override]
        if kw.get("timeout") is None:
            kw["timeout"] = self._timeout
        return super().send(request, **kw)


class AlpacaSpotClient:
    """Alpaca crypto spot (paper or live, by ``base_url``) in our terms; every error is typed."""

    name = "alpaca"
    supports_venue_stops = False
    funding_in_margin = False

    def __init__(self, api_key: str, api_secret: str, base_url: str, *, timeout_s: float = 10.0,
                 clock: Callable[[], float] | None = None,
                 taker_fee_rate: float = DEFAULT_TAKER_FEE_RATE,
                 min_notional_usd: float = DEFAULT_MIN_NOTIONAL_USD):
        from alpaca.trading.client import TradingClient

        if not api_key or not api_secret:
            raise AuthError("alpaca: the API key id and secret are both required")
        url = base_url.rstrip("/")
        if url.endswith("/v2"):
            url = url[:-3]
        self.base_url = url
        self.is_test_venue = is_test_url("alpaca", url)
        self.timeout_s = float(timeout_s)
        self.clock: Callable[[], float] = clock or time.time      # epoch seconds, as the other clients
        self.taker_fee_rate = float(taker_fee_rate)
        self.min_notional_usd = float(min_notional_usd)
        self.time_offset_ms = 0.0
        self._secrets = tuple(s for s in (api_key, api_secret) if len(s) >= 4)
        self._steps: dict[str, Decimal] = {}      # min_trade_increment per pair, from rules()

        tc = TradingClient(api_key=api_key, secret_key=api_secret, paper=self.is_test_venue,
                           url_override=url)
        # alpaca-py 0.44 internals (alpaca/common/rest.py): RESTClient._retry / _session. Fail loudly
        # if they move rather than silently re-POSTing orders or waiting without a timeout.
        if not hasattr(tc, "_retry") or not isinstance(getattr(tc, "_session", None), requests.Session):
            raise RuntimeError("alpaca-py internals changed: cannot disable its retries / set a timeout")
        tc._retry = 0
        adapter = _TimeoutAdapter(self.timeout_s)
        tc._session.mount("http://", adapter)
        tc._session.mount("https://", adapter)
        self._tc = tc

    def __repr__(self) -> str:
        return f"AlpacaSpotClient(base_url={self.base_url!r}, test={self.is_test_venue})"

    # --- errors ---------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text[:400]

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one SDK call; translate whatever alpaca-py / requests / pydantic raise into venue.py's
        typed errors. The typed error is raised *after* the handler, so it chains nothing: a requests
        exception holds the request, headers (the key pair) included."""
        from alpaca.common.exceptions import APIError
        from pydantic import ValidationError

        err: VenueError
        try:
            return fn()
        except VenueError:
            raise
        except APIError as e:
            err = self._api_error(e, what)
        except requests.exceptions.ConnectTimeout as e:      # before Timeout / ConnectionError: both
            err = VenueUnavailable(self._scrub(f"alpaca {what}: connect timeout: {e}"))
        except requests.exceptions.Timeout as e:
            err = Ambiguous(self._scrub(f"alpaca {what}: timed out after {self.timeout_s:g}s "
                                        f"waiting for the answer: {e}"))
        except requests.exceptions.ConnectionError as e:
            if _never_connected(e):
                err = VenueUnavailable(self._scrub(f"alpaca {what}: cannot connect: {e}"))
            else:
                err = Ambiguous(self._scrub(f"alpaca {what}: connection lost: {e}"))
        except requests.exceptions.RequestException as e:    # incl. a 2xx body that is not JSON
            err = Ambiguous(self._scrub(f"alpaca {what}: {type(e).__name__}: {e}"))
        except ValidationError as e:
            err = Ambiguous(self._scrub(f"alpaca {what}: unexpected response: "
                                        f"{e.error_count()} validation errors"))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError) as e:
            # a body of the wrong shape (an empty 200, a list where an object belongs ...): alpaca-py's
            # Model(**raw) raises TypeError; the request may have been processed, so it is ambiguous
            err = Ambiguous(self._scrub(f"alpaca {what}: unexpected response ({type(e).__name__})"))
        raise err

    def _parse(self, what: str, fn: Callable[[], T]) -> T:
        """Our reading of an answer the SDK accepted; a field we cannot use makes the answer ambiguous."""
        try:
            return fn()
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError) as e:
            raise Ambiguous(self._scrub(f"alpaca {what}: unexpected response ({type(e).__name__})")) from None

    def _api_error(self, e: Any, what: str) -> VenueError:
        status = e.status_code
        text = str(e)
        code: int | str | None = None
        message = text
        try:
            body = json.loads(text)
            if isinstance(body, dict):
                code = body.get("code")
                message = str(body.get("message") or text)
        except ValueError:
            pass
        msg = self._scrub(f"alpaca {what}: HTTP {status}" + (f" code {code}" if code is not None else "")
                          + f": {message}")
        low = message.lower()
        kw = {"code": code, "status": status}
        if status == 429:
            headers = e.response.headers if e.response is not None else {}
            wait, used = self._rate_limit(headers)
            return RateLimited(msg, retry_after_s=wait, used_weight=used, **kw)
        if status is None or status >= 500:
            return Ambiguous(msg, **kw)
        if status == 401:
            return AuthError(msg, **kw)
        if status == 403:
            if "insufficient" in low:
                return InsufficientMargin(msg, **kw)
            if code is None or any(w in low for w in ("forbidden", "not authorized", "unauthorized",
                                                      "permission", "api key", "access key")):
                return AuthError(msg, **kw)
            return OrderRejected(msg, **kw)          # 40310000 business refusal: min order value...
        if status == 422 and code in (40010001, "40010001") and "client_order_id must be unique" in low:
            return DuplicateClientId(msg, **kw)      # an order under this id exists: ours, processed late
        return OrderRejected(msg, **kw)              # 400, 404, other 422s (bad qty, id too long...)

    def _rate_limit(self, headers: Any) -> tuple[float, int | None]:
        wait = DEFAULT_RATE_LIMIT_WAIT_S
        ra = headers.get("Retry-After")
        reset = headers.get("X-RateLimit-Reset")
        if ra:
            try:
                wait = float(ra)
            except ValueError:
                try:
                    wait = parsedate_to_datetime(ra).timestamp() - self.clock()
                except (TypeError, ValueError):
                    pass
        elif reset:
            try:
                wait = float(reset) - self.clock()
            except ValueError:
                pass
        if not math.isfinite(wait) or wait <= 0:
            wait = 1.0
        used = None
        try:
            used = int(headers["X-RateLimit-Limit"]) - int(headers["X-RateLimit-Remaining"])
        except (KeyError, TypeError, ValueError):
            pass
        return wait, used

    @staticmethod
    def _is_not_found(e: VenueError) -> bool:
        """Alpaca's "no such order" (404, code 40410000 "order not found for ..."), not any 404 (a wrong
        base URL answers 404 too, and reading that as "never seen" would invite a duplicate order)."""
        return e.status == 404 and (e.code in (40410000, "40410000") or "order not found" in str(e).lower())

    # --- time -----------------------------------------------------------------------------------
    def server_time(self) -> datetime:
        ts = self._call("GET /v2/clock", lambda: self._tc.get_clock().timestamp)
        return self._parse("GET /v2/clock", lambda: (ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None
                                                     else ts.astimezone(timezone.utc)))

    def sync_time(self) -> float:
        """Venue clock minus ours, in ms (midpoint of the request). Informative only: Alpaca
        authenticates by key headers, nothing is signed with a timestamp."""
        t0 = self.clock()
        st = self.server_time().timestamp()
        t1 = self.clock()
        self.time_offset_ms = (st - (t0 + t1) / 2) * 1000.0
        return self.time_offset_ms

    # --- rules ----------------------------------------------------------------------------------
    def rules(self, symbol: str) -> VenueRules:
        sym = to_alpaca(symbol)
        asset = self._call(f"GET /v2/assets/{legacy_symbol(sym)}",
                           lambda: self._tc.get_asset(legacy_symbol(sym)))
        status = getattr(asset.status, "value", asset.status)
        cls = getattr(asset.asset_class, "value", asset.asset_class)
        if cls != "crypto" or not asset.tradable or status != "active":
            raise OrderRejected(f"alpaca: {sym} is not a tradable crypto pair (class {cls}, status "
                                f"{status}, tradable {asset.tradable})")
        step = _dec(asset.min_trade_increment) or _dec(asset.min_order_size)
        tick = _dec(asset.price_increment)
        if step is None or tick is None or step <= 0 or tick <= 0:
            raise OrderRejected(f"alpaca: {sym} has no usable min_trade_increment / price_increment")
        min_qty = _dec(asset.min_order_size) or step
        quote = sym.split("/", 1)[1] if "/" in sym else ""
        r = VenueRules(tick_size=float(tick), step_size=float(step), min_qty=float(min_qty),
                       min_notional=self.min_notional_usd if quote == "USD" else 0.0)
        self._steps[sym] = step
        return r

    # --- orders ---------------------------------------------------------------------------------
    def place_order(self, spec: OrderSpec) -> VenueOrder:
        from alpaca.trading.enums import OrderSide, TimeInForce
        from alpaca.trading.models import Order
        from alpaca.trading.requests import MarketOrderRequest

        sym = to_alpaca(spec.symbol)
        if spec.type is not VenueOrderType.MARKET:
            raise OrderRejected(f"alpaca spot: {spec.type.value} orders are not supported (no stop-market "
                                "for crypto; protective exits are kept by the broker)")
        if spec.reduce_only and spec.side is Side.BUY:
            raise OrderRejected("alpaca spot: a reduce-only BUY cannot reduce anything (no short positions)")
        if not (spec.qty > 0 and math.isfinite(spec.qty)):
            raise OrderRejected(f"alpaca: invalid quantity {spec.qty!r}")
        if sym not in self._steps:
            self.rules(sym)
        step = self._steps[sym]
        qty = qty_string(spec.qty, step)
        if Decimal(qty) <= 0:
            raise OrderRejected(f"alpaca: quantity {spec.qty!r} is below the step {step}")
        if spec.reduce_only:
            # Spot has no reduce-only flag; emulate it: a reduce-only SELL sells at most what is held
            # (floored to the step). Needed because the buy fee is taken in the coin: an entry of 0.01
            # BTC leaves 0.009975 held, and a SELL of 0.01 would be refused "insufficient balance".
            held = self._sellable(sym)
            cap = qty_string(float(held), step) if held > 0 else "0"
            if Decimal(cap) <= 0:
                raise OrderRejected(f"alpaca spot: reduce-only SELL of {sym} but no position of at least "
                                    f"one step ({step}) is held")
            if Decimal(cap) < Decimal(qty):
                qty = cap
        try:
            req = MarketOrderRequest(symbol=sym, qty=float(qty), time_in_force=TimeInForce.IOC,
                                     side=OrderSide.BUY if spec.side is Side.BUY else OrderSide.SELL,
                                     client_order_id=spec.client_order_id)
        except ValueError as e:      # pydantic validation of our own request: nothing was sent
            raise OrderRejected(self._scrub(f"alpaca: invalid order: {e}")) from None
        body = req.to_request_fields()
        body["qty"] = qty            # the exact decimal string, not a float

        def post() -> Any:
            raw = self._tc.post("/orders", body)
            if not isinstance(raw, dict):
                raise Ambiguous(f"alpaca POST /v2/orders: unexpected response {type(raw).__name__}")
            return Order(**raw)

        try:
            placed = self._call("POST /v2/orders", post)
        except OrderRejected as e:
            if e.code is None:   # no Alpaca error code: an HTML/empty 4xx page is unreadable, not a definite
                raise Ambiguous(str(e), status=e.status) from None      # reject (the order may exist)
            raise
        return self._parse("POST /v2/orders", lambda: self._order(placed))

    def get_order(self, symbol: str, client_order_id: str, conditional: bool | None = None) -> VenueOrder | None:
        try:
            order = self._call("GET /v2/orders:by_client_order_id",
                               lambda: self._tc.get_order_by_client_id(client_order_id))
        except OrderRejected as e:
            if self._is_not_found(e):
                return None
            raise
        return self._parse("GET /v2/orders:by_client_order_id", lambda: self._order(order))

    def cancel_order(self, symbol: str, client_order_id: str, conditional: bool | None = None) -> VenueOrder | None:
        """Cancel a working order; returns it as it stands afterwards (CANCELED, or FILLED if it filled
        first). None: the venue never saw it. Alpaca cancels asynchronously (pending_cancel, which
        maps to SUBMITTED), so a caller that needs the final state polls :meth:`get_order`."""
        cur = self.get_order(symbol, client_order_id)
        if cur is None or not cur.state.is_open:
            return cur
        try:
            self._call(f"DELETE /v2/orders/{cur.venue_order_id}",
                       lambda: self._tc.cancel_order_by_id(cur.venue_order_id))
        except OrderRejected as e:
            if e.status not in (404, 422):     # 422: not cancelable any more (filled meanwhile)
                raise
        return self.get_order(symbol, client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        req = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500,
                               symbols=[to_alpaca(symbol)] if symbol else None)
        orders = self._call("GET /v2/orders", lambda: self._tc.get_orders(req))
        out = self._parse("GET /v2/orders", lambda: [self._order(o) for o in orders])
        if symbol:
            out = [o for o in out if o.symbol == to_alpaca(symbol)]
        return out

    def fills(self, symbol: str, client_order_id: str, conditional: bool | None = None) -> list[VenueFill]:
        """One fill per order, from the order's cumulative ``filled_qty`` / ``filled_avg_price``
        (alpaca-py 0.44's TradingClient has no account-activities call, and Alpaca's FILL activities
        carry no fee). ``trade_id`` is the venue order id; for a partially filled order the fill grows
        as the order fills. Fee: see the module docstring (taker rate, in USD at the fill price)."""
        o = self.get_order(symbol, client_order_id)
        if o is None or o.filled_qty <= 0 or not o.avg_price:
            return []
        return [VenueFill(client_order_id=o.client_order_id, symbol=o.symbol, side=o.side, qty=o.filled_qty,
                          price=o.avg_price, fee=o.filled_qty * o.avg_price * self.taker_fee_rate,
                          ts=o.updated_at or datetime.fromtimestamp(self.clock(), tz=timezone.utc),
                          trade_id=o.venue_order_id)]

    def _order(self, o: Any) -> VenueOrder:
        status = getattr(o.status, "value", o.status)
        otype = getattr(o.type or o.order_type, "value", o.type or o.order_type) or "market"
        vtype = VenueOrderType.STOP_MARKET if otype in ("stop", "stop_limit", "trailing_stop") \
            else VenueOrderType.MARKET
        side = getattr(o.side, "value", o.side)
        avg = _f(o.filled_avg_price)
        ts = o.filled_at or o.canceled_at or o.expired_at or o.failed_at or o.updated_at
        if ts is not None and ts.tzinfo is None:
            ts = ts.replace(tzinfo=timezone.utc)
        state = _STATES.get(status, OrderState.SUBMITTED)
        if state is OrderState.CANCELED and _f(o.qty) > 0 and _f(o.filled_qty) >= _f(o.qty):
            state = OrderState.FILLED           # "calculated" after a complete fill
        return VenueOrder(
            client_order_id=o.client_order_id, symbol=from_alpaca(o.symbol or ""),
            side=Side.BUY if side == "buy" else Side.SELL, qty=_f(o.qty), filled_qty=_f(o.filled_qty),
            avg_price=avg if avg > 0 else None, state=state, type=vtype,
            stop_price=_f(o.stop_price) or None, venue_order_id=str(o.id),
            updated_at=ts.astimezone(timezone.utc) if ts else None,
            reason=f"alpaca status {status}" if state in (OrderState.CANCELED, OrderState.REJECTED) else None)

    # --- account --------------------------------------------------------------------------------
    def positions(self) -> list[VenuePosition]:
        raw = self._call("GET /v2/positions", self._tc.get_all_positions)
        return self._parse("GET /v2/positions", lambda: self._positions(raw))

    def _sellable(self, sym: str) -> Decimal:
        """Coins of ``sym`` that a sell may use: ``qty_available`` (held minus what open orders hold), or ``qty``
        when the venue does not send it."""
        raw = self._call("GET /v2/positions", self._tc.get_all_positions)

        def read() -> Decimal:
            total = Decimal(0)
            for p in raw:
                if getattr(p.asset_class, "value", p.asset_class) == "crypto" and from_alpaca(p.symbol) == sym:
                    avail = _dec(p.qty_available)
                    total += avail if avail is not None else (_dec(p.qty) or Decimal(0))
            return total

        return self._parse("GET /v2/positions", read)

    def _positions(self, raw: Any) -> list[VenuePosition]:
        out = []
        for p in raw:
            if getattr(p.asset_class, "value", p.asset_class) != "crypto":
                continue                                   # equities of the same account: not ours
            qty = _f(p.qty)
            if qty <= 0:
                continue
            out.append(VenuePosition(symbol=from_alpaca(p.symbol), side=PositionSide.LONG, qty=qty,
                                     entry_price=_f(p.avg_entry_price), unrealized_pnl=_f(p.unrealized_pl),
                                     mark_price=_f(p.current_price) or None))
        return out

    def balance(self) -> VenueBalance:
        """wallet = cash; available = non_marginable_buying_power (crypto is not marginable; falls
        back to buying_power, then cash); equity = equity (cash + positions at market)."""
        a = self._call("GET /v2/account", self._tc.get_account)
        return self._parse("GET /v2/account", lambda: self._balance(a))

    def _balance(self, a: Any) -> VenueBalance:
        cash = _f(a.cash)
        avail = _dec(a.non_marginable_buying_power)
        if avail is None:
            avail = _dec(a.buying_power)
        equity = _dec(a.equity) if _dec(a.equity) is not None else _dec(a.portfolio_value)
        return VenueBalance(wallet=cash, available=float(avail) if avail is not None else cash,
                            equity=float(equity) if equity is not None else cash)

    # --- futures only: no-ops on spot -----------------------------------------------------------
    def prepare_symbol(self, symbol: str, leverage: int) -> None:
        return None

    def funding(self, symbol: str, since: datetime) -> list[FundingPayment]:
        return []


def _never_connected(e: BaseException) -> bool:
    """True when a requests ConnectionError means the request was never sent: connection refused,
    DNS failure (urllib3 NewConnectionError / NameResolutionError). A connection that dropped after
    the request went out (RemoteDisconnected, reset) is not: it is ambiguous."""
    from urllib3.exceptions import NewConnectionError

    seen: set[int] = set()
    stack: list[Any] = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, (NewConnectionError, ConnectionRefusedError)):
            return True
        if isinstance(x, BaseException):
            stack.extend([getattr(x, "reason", None), x.__cause__, x.__context__])
            stack.extend(a for a in x.args if isinstance(a, BaseException))
    return False
