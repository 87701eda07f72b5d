"""Binance USD-M perpetuals as a :class:`tracer.execution.venue.VenueClient`, over python-binance's ``Client``.

Thin: one venue call per method where possible, no retries, no trading state (the venue is the truth);
the only cache is the exchange rules (never the symbol's leverage or margin mode: :meth:`prepare_symbol`). Requests wait for the
next minute when the venue's used-weight header nears its limit (:class:`binance_errors.WeightThrottle`). Every
python-binance / requests error is translated into the typed errors of :mod:`tracer.execution.venue` (see
:mod:`tracer.execution.venues.binance_errors`); nothing else escapes.

Checked against python-binance 1.0.37 (``binance/client.py``, ``binance/base_client.py``):

- No base-URL parameter: the instance's ``FUTURES_URL`` (root + ``/fapi``), ``FUTURES_DATA_URL`` and
  ``API_URL`` are set after construction; ``Client(..., ping=False)`` makes no request in ``__init__``.
- Signed requests carry ``timestamp = int(time.time() * 1000 + self.timestamp_offset)`` and
  ``recvWindow = self.REQUEST_RECVWINDOW`` (class default 10000); both are set per instance here.
- ``futures_create_order`` routes STOP / STOP_MARKET / TAKE_PROFIT / TAKE_PROFIT_MARKET /
  TRAILING_STOP_MARKET to ``POST /fapi/v1/algoOrder`` (``algoType=CONDITIONAL``, ``stopPrice`` renamed
  ``triggerPrice``, ``newClientOrderId`` dropped, ``clientAlgoId`` generated unless given), everything
  else to ``POST /fapi/v1/order`` (a ``newClientOrderId`` generated unless given): we always pass ours.
  Query/cancel of an algo order (``GET``/``DELETE /fapi/v1/algoOrder``) take ``algoId`` or ``clientAlgoId``
  and no ``symbol`` (Binance's documented parameters; python-binance's docstring calls symbol required).
  The venue forgets CANCELED/EXPIRED algo orders without fills after 3 days (then ``get_order`` is None).
- ``futures_get_order`` / ``futures_cancel_order`` go to ``/fapi/v1/algoOrder`` when ``clientAlgoId`` or
  ``algoId`` is passed; ``futures_get_open_orders(conditional=True)`` is ``GET /fapi/v1/openAlgoOrders``.
- ``futures_position_information`` / ``futures_account_balance`` default to v3; ``futures_account`` to v2.
  We ask for ``positionRisk`` v2 explicitly (it carries ``leverage``, ``marginType`` and
  ``isolatedWallet``; v3 does not) and ``account`` v2 (wallet, unrealised P&L and available in one call).
- Errors: a non-2xx response raises ``BinanceAPIException`` (``status_code``, ``code``, ``message``,
  ``response``; for a non-JSON body ``code`` is 0 and ``message`` says "Invalid JSON error message");
  a 2xx non-JSON body raises ``BinanceRequestException``; network errors are requests' own.
"""
from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable

from tracer.execution.broker import VenueRules
from tracer.execution.venue import (Ambiguous, ForcedClose, FundingPayment, OrderRejected, OrderSpec, VenueBalance, VenueFill,
                                    VenueOrder, VenueOrderType, VenuePosition, is_test_url)
from tracer.execution.venues.binance_errors import (NOT_FOUND_CODES, WeightThrottle, translate_api_error,
                                                    translate_request_error)
from tracer.execution.venues.fields import finite, format_step, required, utc_from_ms
from tracer.models import OrderState, PositionSide, Side
from tracer.symbols import binance_symbol

__all__ = ["BinanceFuturesClient", "LIVE_URL"]

LIVE_URL = "https://fapi.binance.com"

CONDITIONAL_TYPES = (VenueOrderType.STOP_MARKET, VenueOrderType.TAKE_PROFIT_MARKET)
_STABLE = ("USDT", "USDC", "BUSD", "FDUSD")

_STATE = {
    "NEW": OrderState.SUBMITTED, "PARTIALLY_FILLED": OrderState.PARTIALLY_FILLED, "FILLED": OrderState.FILLED,
    "CANCELED": OrderState.CANCELED, "EXPIRED": OrderState.CANCELED, "EXPIRED_IN_MATCH": OrderState.CANCELED,
    "REJECTED": OrderState.REJECTED,
}
_ALGO_STATE = {
    "NEW": OrderState.SUBMITTED, "TRIGGERING": OrderState.SUBMITTED, "TRIGGERED": OrderState.SUBMITTED,
    "FINISHED": OrderState.FILLED, "CANCELED": OrderState.CANCELED, "EXPIRED": OrderState.CANCELED,
    "REJECTED": OrderState.REJECTED,
}
_TYPES = {"MARKET": VenueOrderType.MARKET, "STOP_MARKET": VenueOrderType.STOP_MARKET,
          "TAKE_PROFIT_MARKET": VenueOrderType.TAKE_PROFIT_MARKET}


def _forced_reason(client_order_id: str) -> str | None:
    """What the venue's own order was, by its client id (doc "Event: Order Update", special client order ids):
    ``autoclose-`` a liquidation, ``adl_autoclose`` an auto-deleveraging, ``settlement_autoclose-`` a
    settlement for delisting or delivery; None: not the venue's own."""
    if client_order_id.startswith("settlement_autoclose"):
        return ForcedClose.SETTLEMENT.value
    if client_order_id.startswith("adl_autoclose"):
        return ForcedClose.ADL.value
    if client_order_id.startswith("autoclose-"):
        return ForcedClose.LIQUIDATION.value
    return None


def _epoch_s(clock: Callable[[], Any]) -> float:
    """``clock()`` in epoch seconds; a clock may return a float (``time.time``) or an aware datetime."""
    v = clock()
    return v.timestamp() if isinstance(v, datetime) else float(v)


@functools.lru_cache(maxsize=1)
def _make_client_class():
    from binance.client import Client

    class _Client(Client):  # one subclass, overriding only _request
        """python-binance's Client whose signed timestamps follow our clock plus the venue offset, and which
        keeps under the venue's request-weight limit (see :class:`WeightThrottle`)."""
        tb_clock: Callable[[], float] | None = None
        tb_offset_ms: float = 0.0
        tb_throttle: "WeightThrottle | None" = None

        def _request(self, method, uri, signed, force_params=False, **kwargs):  # noqa: ANN001
            # python-binance signs with time.time() * 1000 + timestamp_offset (base_client._get_request_kwargs)
            extra = (_epoch_s(self.tb_clock) - time.time()) * 1000 if self.tb_clock is not None else 0.0
            self.timestamp_offset = self.tb_offset_ms + extra
            throttle = self.tb_throttle
            if throttle is not None:
                throttle.before_request((time.time() * 1000 + self.timestamp_offset) / 1000)
            sent_s = (time.time() * 1000 + self.timestamp_offset) / 1000   # the minute the venue counts it in
            self.response = None
            try:
                return super()._request(method, uri, signed, force_params, **kwargs)
            finally:
                # every answer but 429/418 (those are the caller's RateLimited / IpBanned, with their own wait)
                if throttle is not None and self.response is not None and self.response.status_code not in (418, 429):
                    throttle.after_response(self.response.headers.get("X-MBX-USED-WEIGHT-1M"), sent_s)

    return _Client


class BinanceFuturesClient:
    """Binance USD-M perpetuals (one-way mode, isolated margin). ``base_url`` is the REST root, e.g.
    ``https://fapi.binance.com``, ``https://testnet.binancefuture.com`` or a local fake.

    ``symbols_map``: ours -> Binance's (default ``BTC/USD`` -> ``BTCUSDT``). ``clock``: local time, in epoch
    seconds or as an aware datetime (default ``time.time``); signed requests carry ``clock() + offset``
    where the offset comes from :meth:`sync_time` (0 until then). Protective orders are always sent
    reduce-only with ``workingType=MARK_PRICE``. ``venue_order_id`` is the Binance ``orderId`` for
    regular orders and ``algo:<algoId>`` for conditional ones (two id spaces).

    Not thread-safe by design (one client per caller thread; python-binance shares one requests session).
    """

    name = "binance"
    supports_venue_stops = True
    # isolatedWallet pays the position's funding (doc "Event: Balance and Position Update": a FUNDING FEE in an
    # isolated position changes that position's isolated wallet)
    funding_in_margin = True

    def __init__(self, api_key: str, api_secret: str, base_url: str, *, timeout_s: float = 10.0,
                 recv_window_ms: int = 5000, symbols_map: dict[str, str] | None = None,
                 clock: Callable[[], float | datetime] | None = None,
                 throttle: WeightThrottle | None = None, log: logging.Logger | None = None) -> None:
        root = (base_url or LIVE_URL).rstrip("/")
        if root.endswith("/fapi"):          # tolerate a root given with the API prefix
            root = root[: -len("/fapi")]
        self.base_url = root
        self.is_test_venue = is_test_url("binance", root)
        self.timeout_s = float(timeout_s)
        self._clock = clock or time.time
        self._symbols_map = dict(symbols_map or {})
        self._reverse = {v: k for k, v in self._symbols_map.items()}
        cls = _make_client_class()
        c = cls(api_key or None, api_secret or None, requests_params={"timeout": self.timeout_s}, ping=False)
        c.FUTURES_URL = root + "/fapi"
        c.FUTURES_DATA_URL = root + "/futures/data"
        c.API_URL = root + "/api"
        c.REQUEST_TIMEOUT = self.timeout_s
        c.REQUEST_RECVWINDOW = int(recv_window_ms)
        c.tb_clock = clock
        c.tb_throttle = self.throttle = throttle or WeightThrottle(log=log)
        self._c = c
        self._rules: dict[str, VenueRules] = {}

    def __repr__(self) -> str:   # never the key or the secret
        return f"BinanceFuturesClient(base_url={self.base_url!r}, test={self.is_test_venue})"

    # --- plumbing ---------------------------------------------------------------------------------------
    def venue_symbol(self, symbol: str) -> str:
        return self._symbols_map.get(symbol) or binance_symbol(symbol)

    def our_symbol(self, venue_symbol: str) -> str:
        if venue_symbol in self._reverse:
            return self._reverse[venue_symbol]
        base = venue_symbol[:-4] if venue_symbol.endswith("USDT") else venue_symbol
        return f"{base}/USD"

    @property
    def offset_ms(self) -> float:
        return float(self._c.tb_offset_ms)

    def _call(self, what: str, fn: Callable[..., Any], **params: Any) -> Any:
        from binance.exceptions import BinanceAPIException, BinanceRequestException
        import requests

        try:
            return fn(**params)
        except BinanceAPIException as e:
            err = translate_api_error(e, what)
        except BinanceRequestException:
            err = Ambiguous(f"{what}: unreadable response from the venue")
        except requests.exceptions.RequestException as e:
            err = translate_request_error(e, what)
        except (ValueError, OSError) as e:  # e.g. a JSON body cut short
            err = Ambiguous(f"{what}: {type(e).__name__}")
        raise err

    def _parse(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError) as e:
            raise Ambiguous(f"{what}: unexpected response from the venue ({type(e).__name__}: {str(e)[:200]})") \
                from None

    # --- time -----------------------------------------------------------------------------------------
    def server_time(self) -> datetime:
        r = self._call("server_time", self._c.futures_time)
        t = self._parse("server_time", lambda: utc_from_ms(r["serverTime"]))
        if t is None:
            raise Ambiguous(f"server_time: unreadable serverTime {str(r)[:80]}")
        return t

    def sync_time(self) -> float:
        t0 = _epoch_s(self._clock) * 1000
        r = self._call("sync_time", self._c.futures_time)
        t1 = _epoch_s(self._clock) * 1000
        def offset_of() -> float:
            off = float(required(r["serverTime"])) - (t0 + t1) / 2
            if abs(off) > 366 * 86_400_000:     # a year off: not a clock, a broken answer
                raise ValueError(f"implausible server time offset {off:.0f} ms")
            return off

        offset = self._parse("sync_time", offset_of)
        self._c.tb_offset_ms = offset
        return offset

    # --- rules ----------------------------------------------------------------------------------------
    def rules(self, symbol: str) -> VenueRules:
        vs = self.venue_symbol(symbol)
        if vs not in self._rules:
            self._load_rules()
        if vs not in self._rules:
            raise OrderRejected(f"rules: {vs} is not traded on this venue", code=-1121)
        return self._rules[vs]

    def _load_rules(self) -> None:
        info = self._call("exchange_info", self._c.futures_exchange_info)

        def one(s: dict[str, Any]) -> VenueRules:
            # MARKET orders are checked against MARKET_LOT_SIZE, others against LOT_SIZE: the coarser wins
            f = {x["filterType"]: x for x in s.get("filters", [])}
            lot, mkt = f.get("LOT_SIZE", {}), f.get("MARKET_LOT_SIZE", {})
            steps = [Decimal(x["stepSize"]) for x in (lot, mkt) if finite(x.get("stepSize")) > 0]
            mins = [Decimal(x["minQty"]) for x in (lot, mkt) if x.get("minQty") is not None]
            r = VenueRules(tick_size=float(Decimal(f["PRICE_FILTER"]["tickSize"])), step_size=float(max(steps)),
                           min_qty=float(max(mins)) if mins else float(max(steps)),
                           min_notional=finite(f.get("MIN_NOTIONAL", {}).get("notional")))
            if not (0 < r.tick_size < math.inf and 0 < r.step_size < math.inf and 0 <= r.min_qty < math.inf):
                raise ValueError(f"unusable filters tick {r.tick_size} step {r.step_size} min {r.min_qty}")
            return r

        def parse() -> dict[str, VenueRules]:
            out = {}
            for s in info["symbols"]:
                try:
                    out[s["symbol"]] = one(s)
                except (KeyError, TypeError, ValueError, ArithmeticError):
                    continue        # a symbol we cannot read is a symbol we do not trade
            return out

        self._rules.update(self._parse("exchange_info", parse))
        self.throttle.set_limit(info.get("rateLimits") if isinstance(info, dict) else None)

    # --- orders ---------------------------------------------------------------------------------------------
    def _post_order(self, what: str, **params: Any) -> Any:
        """The order POST. A refusal that carries no venue error code (an HTML or empty 4xx page from a proxy,
        a body cut short) is unreadable, not a definite reject: the order may exist, so it is Ambiguous
        (looked up by client order id, never taken as refused)."""
        try:
            return self._call(what, self._c.futures_create_order, **params)
        except OrderRejected as e:
            if e.code is None:
                raise Ambiguous(f"{what}: unreadable refusal: {e}", status=e.status) from None
            raise

    def place_order(self, spec: OrderSpec) -> VenueOrder:
        vs = self.venue_symbol(spec.symbol)
        r = self.rules(spec.symbol)
        qty = format_step(spec.qty, r.step_size)
        if Decimal(qty) <= 0:
            raise OrderRejected(f"place_order: quantity {spec.qty} is below the step {r.step_size} of {vs}",
                                code=-4003)
        params: dict[str, Any] = {"symbol": vs, "side": "BUY" if spec.side == Side.BUY else "SELL",
                                  "quantity": qty}
        what = f"place_order {spec.client_order_id}"
        if spec.type == VenueOrderType.MARKET:
            params.update(type="MARKET", newClientOrderId=spec.client_order_id, newOrderRespType="RESULT")
            if spec.reduce_only:
                params["reduceOnly"] = "true"
            raw = self._post_order(what, **params)
            return self._parse(what, lambda: self._order(raw, spec.symbol))
        if spec.type in CONDITIONAL_TYPES:
            if spec.stop_price is None or spec.stop_price <= 0:
                raise OrderRejected(f"{what}: {spec.type.value} needs a stop price", code=-1102)
            params.update(type=spec.type.value.upper(), clientAlgoId=spec.client_order_id,
                          triggerPrice=format_step(spec.stop_price, r.tick_size, mode="nearest"),
                          workingType="MARK_PRICE", reduceOnly="true")
            raw = self._post_order(what, **params)
            return self._parse(what, lambda: self._algo(raw, spec.symbol, spec=spec))
        raise OrderRejected(f"{what}: order type {spec.type!r} is not supported")

    def get_order(self, symbol: str, client_order_id: str, conditional: bool | None = None) -> VenueOrder | None:
        vs = self.venue_symbol(symbol)
        what = f"get_order {client_order_id}"
        if conditional is not True:
            raw = self._maybe(what, self._c.futures_get_order, symbol=vs, origClientOrderId=client_order_id)
            if raw is not None or conditional is False:
                return None if raw is None else self._parse(what, lambda: self._order(raw, symbol))
        algo = self._maybe(what, self._c.futures_get_algo_order, clientAlgoId=client_order_id)
        if algo is None:
            return None
        return self._algo_full(algo, symbol, what)

    def cancel_order(self, symbol: str, client_order_id: str, conditional: bool | None = None) -> VenueOrder | None:
        vs = self.venue_symbol(symbol)
        what = f"cancel_order {client_order_id}"
        # protective stops are what we cancel: the algo service first
        if conditional is not False:
            res = self._maybe(what, self._c.futures_cancel_algo_order, clientAlgoId=client_order_id)
            if res is not None:
                algo = self._maybe(what, self._c.futures_get_algo_order, clientAlgoId=client_order_id)
                if algo is not None:
                    return self._algo_full(algo, symbol, what)
                return None
            if conditional is True:
                # not cancellable (filled, expired, unknown): what the venue has of it
                algo = self._maybe(what, self._c.futures_get_algo_order, clientAlgoId=client_order_id)
                return None if algo is None else self._algo_full(algo, symbol, what)
        raw = self._maybe(what, self._c.futures_cancel_order, symbol=vs, origClientOrderId=client_order_id)
        if raw is None:
            return None
        return self._parse(what, lambda: self._order(raw, symbol))

    def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        params = {"symbol": self.venue_symbol(symbol)} if symbol else {}
        regular = self._call("open_orders", self._c.futures_get_open_orders, **params)
        algos = self._call("open_orders", self._c.futures_get_open_algo_orders, **params)

        def parse() -> list[VenueOrder]:
            out = [self._order(o, self.our_symbol(o["symbol"])) for o in regular]
            out += [self._algo(a, self.our_symbol(a["symbol"])) for a in algos]
            return out

        return self._parse("open_orders", parse)

    def fills(self, symbol: str, client_order_id: str, conditional: bool | None = None) -> list[VenueFill]:
        vs = self.venue_symbol(symbol)
        what = f"fills {client_order_id}"
        raw = None
        if conditional is not True:
            raw = self._maybe(what, self._c.futures_get_order, symbol=vs, origClientOrderId=client_order_id)
        if raw is None:
            if conditional is False:
                return []
            algo = self._maybe(what, self._c.futures_get_algo_order, clientAlgoId=client_order_id)
            oid = self._parse(what, lambda: (algo or {}).get("actualOrderId"))
            if not oid or str(oid) in ("0", "-1"):
                return []
            # the triggered order: its own times bound its trades
            raw = self._maybe(what, self._c.futures_get_order, symbol=vs, orderId=oid) or {"orderId": oid}
        order_id = self._parse(what, lambda: raw.get("orderId"))
        if not order_id or str(order_id) in ("0", "-1"):
            return []
        start, end = self._parse(what, lambda: (int(raw.get("time") or 0), int(raw.get("updateTime") or 0)))
        if start > 0:
            # userTrades without a time range answers only the last 7 days (doc "Account Trade List"): the
            # order's own time range, in windows of at most 7 days, filtered by its id here
            rows = self._trades(what, vs, start - 60_000, max(end, start) + 60_000)
            trades = self._parse(what, lambda: [t for t in rows if str(t["orderId"]) == str(order_id)])
        else:
            trades = self._call(what, self._c.futures_account_trades, symbol=vs, orderId=order_id)
        rates: dict[str, float] = {}
        return self._parse(what, lambda: [self._fill(t, client_order_id, symbol, rates) for t in trades])

    def outside_fills(self, symbol: str, since: datetime, ours: dict[str, bool]) -> list[VenueFill]:
        """The account's trades of ``symbol`` since ``since`` of orders that are not ``ours`` (client id ->
        conditional): a close by hand, or one the venue made itself (``reason``: a settlement, a liquidation
        not listed yet). Each with its order's client id, price and commission."""
        vs = self.venue_symbol(symbol)
        what = f"outside fills {vs}"
        trades = self._trades(what, vs, int(since.timestamp() * 1000), self._now_ms() + 60_000)
        if not trades:
            return []
        oids = self._parse(what, lambda: sorted({str(t["orderId"]) for t in trades}))
        cids: dict[str, str] = {}
        for oid in oids:
            o = self._maybe(what, self._c.futures_get_order, symbol=vs, orderId=oid)
            cids[oid] = self._parse(what, lambda: str((o or {}).get("clientOrderId") or ""))
        unknown = {oid for oid in oids if cids[oid] not in ours}
        if unknown:
            # a triggered stop's order has a client id of the venue's: known by its algo order's actualOrderId
            for cid, cond in ours.items():
                if cond and unknown:
                    algo = self._maybe(what, self._c.futures_get_algo_order, clientAlgoId=cid)
                    unknown.discard(self._parse(what, lambda: str((algo or {}).get("actualOrderId") or "")))
        rates: dict[str, float] = {}
        return self._parse(what, lambda: [
            replace(self._fill(t, cids[str(t["orderId"])], symbol, rates), reason=_forced_reason(cids[str(t["orderId"])]))
            for t in trades if str(t["orderId"]) in unknown])

    def _now_ms(self) -> int:
        return int(time.time() * 1000 + self._c.timestamp_offset)

    def _trades(self, what: str, vs: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """userTrades of ``vs`` in [start_ms, end_ms]: "The time between startTime and endTime cannot be longer
        than 7 days" (doc "Account Trade List"), so asked in 7-day windows, each paged by time (1000 a page)."""
        end_ms = min(end_ms, self._now_ms() + 60_000)
        start_ms = max(start_ms, self._now_ms() - 179 * 86_400_000)     # "Only support ... the past 6 months"
        out: list[dict[str, Any]] = []
        while start_ms <= end_ms:
            stop_ms = min(end_ms, start_ms + 7 * 86_400_000 - 1)
            page_start = start_ms
            for _ in range(50):
                rows = self._call(what, self._c.futures_account_trades, symbol=vs, startTime=page_start,
                                  endTime=stop_ms, limit=1000)
                # each row a trade with an id and a time, or the answer is unreadable (a typed error)
                page: list[dict[str, Any]] = self._parse(what, lambda: [r for r in rows if int(r["time"]) >= 0
                                                                         and str(r["id"])])
                out += page
                if len(page) < 1000:
                    break
                page_start = max(int(r["time"]) for r in page) + 1
            start_ms = stop_ms + 1
        return list({str(t["id"]): t for t in out}.values())      # a page's edge is asked twice

    def _fill(self, t: dict[str, Any], client_order_id: str, symbol: str, rates: dict[str, float]) -> VenueFill:
        fee = finite(t.get("commission"))
        asset = t.get("commissionAsset") or "USDT"
        if asset not in _STABLE and fee:
            if asset not in rates:
                rates[asset] = self._usdt_price(asset)
            fee *= rates[asset]
        return VenueFill(
            client_order_id=client_order_id, symbol=symbol,
            side=Side.BUY if t["side"] == "BUY" else Side.SELL, qty=required(t["qty"]),
            price=required(t["price"]), fee=abs(fee), ts=utc_from_ms(t["time"]) or datetime.now(timezone.utc),
            trade_id=str(t["id"]), realized_pnl=finite(t.get("realizedPnl")), order_id=str(t.get("orderId", "")),
            fee_asset=str(asset))

    def _usdt_price(self, asset: str) -> float:
        r = self._call(f"price {asset}", self._c.futures_mark_price, symbol=f"{asset}USDT")
        return self._parse(f"price {asset}", lambda: required(r["markPrice"]))

    # --- account -----------------------------------------------------------------------------------------
    def positions(self) -> list[VenuePosition]:
        rows = self._call("positions", self._c.futures_position_information, version=2)

        def parse() -> list[VenuePosition]:
            out = []
            for p in rows:
                amt = required(p["positionAmt"])
                if amt == 0:
                    continue
                liq = finite(p.get("liquidationPrice"))
                out.append(VenuePosition(
                    symbol=self.our_symbol(p["symbol"]), side=PositionSide.LONG if amt > 0 else PositionSide.SHORT,
                    qty=abs(amt), entry_price=required(p["entryPrice"]), leverage=finite(p.get("leverage"), 1.0),
                    liquidation_price=liq if liq > 0 else None, margin=finite(p.get("isolatedWallet")),
                    unrealized_pnl=finite(p.get("unRealizedProfit")), mark_price=finite(p.get("markPrice")) or None))
            return out

        return self._parse("positions", parse)

    def balance(self) -> VenueBalance:
        acct = self._call("balance", self._c.futures_account, version=2)

        def parse() -> VenueBalance:
            usdt = next((a for a in acct["assets"] if a["asset"] == "USDT"), None)
            if usdt is None:
                return VenueBalance(wallet=0.0, available=0.0, equity=0.0)
            wallet = required(usdt["walletBalance"])
            return VenueBalance(wallet=wallet, available=required(usdt["availableBalance"]),
                                equity=wallet + finite(usdt.get("unrealizedProfit")))

        return self._parse("balance", parse)

    def prepare_symbol(self, symbol: str, leverage: int) -> None:
        """Before every entry: one-way mode, isolated margin and ``leverage`` for the symbol, asked of the venue each
        time, never taken from a cache: a user can switch any of them by hand in the app between two entries (say
        to 20x, or to cross margin), and an entry placed on that would carry a margin and a liquidation price the
        risk rules never approved. Each call is idempotent at the venue (-4046: already isolated)."""
        vs = self.venue_symbol(symbol)
        lev = int(leverage)
        # our orders carry no positionSide: in hedge mode Binance refuses all of them (-4061), stops included
        mode = self._call("position mode", self._c.futures_get_position_mode)
        if self._parse("position mode", lambda: bool(mode["dualSidePosition"])):
            raise OrderRejected("binance: the account is in hedge mode (dual-side positions); the agent trades "
                                "in one-way mode: switch it in the futures settings (Position Mode: One-way)",
                                code="hedge_mode")
        try:
            self._call(f"margin_type {vs}", self._c.futures_change_margin_type, symbol=vs, marginType="ISOLATED")
        except OrderRejected as e:
            if e.code != -4046:          # "No need to change margin type.": already isolated
                raise
        res = self._call(f"leverage {vs}", self._c.futures_change_leverage, symbol=vs, leverage=lev)
        got = self._parse(f"leverage {vs}", lambda: int(res["leverage"]))
        if got != lev:
            raise OrderRejected(f"binance: leverage {vs} is {got}, not the {lev} asked for", code="leverage_not_set")

    def forced_closes(self, symbol: str, since: datetime) -> list[VenueOrder]:
        """The venue's own closes of our positions since ``since``: liquidations and auto-deleveraging
        ("User's Force Orders", ``GET /fapi/v1/forceOrders``; their client ids are ``autoclose-``/``adl_autoclose``),
        and a settlement (``settlement_autoclose-``) should the list carry one (not documented either way)."""
        vs = self.venue_symbol(symbol)
        # asked in 7-day windows: the endpoint's documented span ("data within 7 days before endTime")
        end_ms = self._now_ms() + 60_000
        start_ms = int(since.timestamp() * 1000)
        rows: list[dict[str, Any]] = []
        while start_ms < end_ms:
            stop_ms = min(end_ms, start_ms + 7 * 86_400_000 - 1)
            rows += self._call("forced closes", self._c.futures_liquidation_orders, symbol=vs,
                               startTime=start_ms, endTime=stop_ms, limit=100)
            start_ms = stop_ms + 1
        orders = self._parse("forced closes", lambda: [
            replace(o, reason=_forced_reason(o.client_order_id) or ForcedClose.LIQUIDATION.value)
            for o in (self._order(r, symbol) for r in rows)])
        out = []
        for o, r in zip(orders, rows):
            if o.reason == ForcedClose.SETTLEMENT.value and o.filled_qty > 0:
                # a settlement charges the taker fee: from its trades (a liquidation's loss is its margin)
                t0, t1 = self._parse("forced closes", lambda: (int(r["time"]), int(r.get("updateTime") or r["time"])))
                trades = self._trades("forced closes", vs, t0 - 60_000, t1 + 60_000)
                fills = self._parse("forced closes", lambda: [self._fill(t, o.client_order_id, symbol, {})
                                                               for t in trades if str(t["orderId"]) == o.venue_order_id])
                o = replace(o, fee=sum(f.fee for f in fills), fee_asset=fills[0].fee_asset if fills else "USDT")
            out.append(o)
        return out

    def funding(self, symbol: str, since: datetime) -> list[FundingPayment]:
        vs = self.venue_symbol(symbol)
        start = int(since.timestamp() * 1000)
        out: list[FundingPayment] = []
        for _ in range(50):   # pages of 1000
            rows = self._call("funding", self._c.futures_income_history, symbol=vs, incomeType="FUNDING_FEE",
                              startTime=start, limit=1000)
            page = self._parse("funding", lambda: [(int(r["time"]), -required(r["income"]),
                                                    str(r.get("tranId") or f"{r['time']}:{r['income']}"))
                                                   for r in rows
                                                   if r.get("incomeType", "FUNDING_FEE") == "FUNDING_FEE"])
            out += [FundingPayment(symbol=symbol, ts=utc_from_ms(t) or since, amount=a, ref=ref) for t, a, ref in page]
            if len(rows) < 1000 or not page:
                break
            start = max(t for t, _, _ in page) + 1
        return out

    # --- response parsing -----------------------------------------------------------------------------
    def _maybe(self, what: str, fn: Callable[..., Any], **params: Any) -> Any:
        """The call's result, or None when the venue says the order does not exist."""
        try:
            return self._call(what, fn, **params)
        except OrderRejected as e:
            if e.code in NOT_FOUND_CODES:
                return None
            raise

    def _order(self, o: dict[str, Any], symbol: str) -> VenueOrder:
        status = o["status"]
        filled = finite(o.get("executedQty"))
        avg = finite(o.get("avgPrice"))
        state = _STATE.get(status, OrderState.SUBMITTED)
        reason = None
        if status in ("EXPIRED", "EXPIRED_IN_MATCH", "REJECTED"):
            reason = status.lower() + (" after a partial fill" if filled > 0 else "")
        typ = _TYPES.get(o.get("origType") or o.get("type"), VenueOrderType.MARKET)
        stop = finite(o.get("stopPrice"))
        return VenueOrder(
            client_order_id=o["clientOrderId"], symbol=symbol, side=Side.BUY if o["side"] == "BUY" else Side.SELL,
            qty=required(o["origQty"]), filled_qty=filled, avg_price=avg if avg > 0 and filled > 0 else None,
            state=state, type=typ, reduce_only=bool(o.get("reduceOnly")), stop_price=stop or None,
            venue_order_id=str(o.get("orderId", "")), updated_at=utc_from_ms(o.get("updateTime")), reason=reason)

    def _algo(self, a: dict[str, Any], symbol: str, *, actual: dict[str, Any] | None = None,
              spec: OrderSpec | None = None) -> VenueOrder:
        status = a["algoStatus"]
        state = _ALGO_STATE.get(status, OrderState.SUBMITTED)
        filled, avg, reason = 0.0, None, None
        if actual is not None:
            filled = finite(actual.get("executedQty"))
            p = finite(actual.get("avgPrice"))
            avg = p if p > 0 and filled > 0 else None
            state = _STATE.get(actual.get("status"), state)
            if actual.get("status") in ("EXPIRED", "CANCELED", "REJECTED"):
                reason = f"triggered order {actual.get('status', '').lower()}"
        elif status == "FINISHED":
            # finished, and its triggered order not readable (a lookup that missed it): not final without its
            # fill, or the fill would be lost; a triggered order still working until it is read
            state = OrderState.SUBMITTED
        if status in ("EXPIRED", "REJECTED"):
            reason = f"algo order {status.lower()}"
        qty = finite(a.get("quantity"))
        if qty == 0 and spec is not None:
            qty = spec.qty
        return VenueOrder(
            client_order_id=a["clientAlgoId"], symbol=symbol, side=Side.BUY if a["side"] == "BUY" else Side.SELL,
            qty=qty, filled_qty=filled, avg_price=avg, state=state,
            type=_TYPES.get(a.get("orderType"), VenueOrderType.STOP_MARKET),
            reduce_only=bool(a.get("reduceOnly")) or bool(a.get("closePosition")),
            stop_price=finite(a.get("triggerPrice")) or None, venue_order_id=f"algo:{a.get('algoId', '')}",
            updated_at=utc_from_ms(a.get("updateTime")), reason=reason,
            triggered=status in ("TRIGGERING", "TRIGGERED", "FINISHED") and state is OrderState.SUBMITTED,
            ended_unread=status == "FINISHED" and actual is None)

    def _algo_full(self, a: dict[str, Any], symbol: str, what: str) -> VenueOrder:
        """An algo order, with its triggered order's fill when it has one."""
        actual = None
        oid = self._parse(what, lambda: a.get("actualOrderId"))
        if oid and str(oid) not in ("0", "-1") and a.get("algoStatus") in ("TRIGGERED", "FINISHED"):
            actual = self._maybe(what, self._c.futures_get_order, symbol=self.venue_symbol(symbol), orderId=oid)
        return self._parse(what, lambda: self._algo(a, symbol, actual=actual))
