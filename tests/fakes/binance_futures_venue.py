"""A fake Binance USD-M futures venue on 127.0.0.1, enough for :class:`BinanceFuturesClient`.

It speaks the REST endpoints python-binance 1.0.37 calls (paths below) and behaves like Binance where it
matters to us:

- **Auth**: ``X-MBX-APIKEY`` must be the venue's key (else 401 / -2015); signed requests are checked with
  HMAC-SHA256 over ``totalParams`` = raw query string + raw body (Binance's definition), minus the trailing
  ``&signature=``; a bad signature is ``400 / -1022``. ``timestamp`` is checked against the venue clock
  (``time.time() + clock_offset_ms``): more than 1000 ms ahead or more than ``recvWindow`` behind is
  ``400 / -1021``.
- **Orders**: MARKET on ``/fapi/v1/order``; STOP_MARKET / TAKE_PROFIT_MARKET (and TRAILING_STOP_MARKET,
  accepted, never triggered) on ``/fapi/v1/algoOrder`` (the conditional-order service; the old
  ``/fapi/v1/order`` route answers ``-4120`` for them, as Binance does since 2025-12). Client ids are
  unique **among open orders** only (Binance: "A unique id among open orders"): a second one while the first
  is open is ``-4116``; once the first is filled, cancelled or expired the id is accepted again and a query by
  it finds the newest order. The venue does not protect us from sending an id twice: the DB must.
  ``post_counts[cid]`` counts every order POST naming the id (booked, rejected or faulted).
- **Strict parameters** on ``GET``/``DELETE /fapi/v1/algoOrder``: only ``algoId``/``clientAlgoId`` (plus
  ``recvWindow``, ``timestamp``, ``signature``), else ``-1104``.
- **Checks**: precision (more decimals than the step/tick: ``-1111``), quantity not a multiple of the
  step or under ``minQty`` (``-1013``), ``<= 0`` (``-4003``), min notional unless reduce-only
  (``-4164``), reduce-only that would not reduce (``-2022``), margin (``-2019``), a stop that would
  trigger immediately (``-2021``), unknown symbol (``-1121``).
- **Matching**: a MARKET order fills at the mark price set by the test (``set_price``), taker fee
  ``taker_fee`` (4 bps) of the notional, charged in USDT (or in BNB at the BNBUSDT mark when
  ``fee_asset = "BNB"``). One-way mode, isolated margin (``notional / leverage`` moved to the position),
  entry price averaged, realised P&L on reductions. ``set_price`` walks the events the move crosses in
  the order the price meets them: conditional orders whose trigger is crossed (on the mark price) fire a
  reduce-only MARKET order (the algo order goes FINISHED with ``actualOrderId``; EXPIRED when there is
  nothing to reduce; ``inject("trigger", "partial", fraction=f)`` makes the triggered order fill only ``f``
  of it and expire, as a thin book does), and a position whose liquidation price is crossed is liquidated (closed at the
  liquidation price, its isolated margin lost, an ``autoclose-`` order and trade recorded).
- **Funding**: ``apply_funding(symbol, rate)`` books a FUNDING_FEE income (longs pay a positive rate).

Filters (close to the real ones, exact and documented here):

============  ========  ========  =======  ============
symbol        tick      step      minQty   min notional
============  ========  ========  =======  ============
BTCUSDT       0.10      0.001     0.001    100
ETHUSDT       0.01      0.001     0.001    20
SOLUSDT       0.01      1         1        5
============  ========  ========  =======  ============

Faults: ``inject(endpoint, fault, times=1, **kw)``; ``endpoint`` is ``"POST /fapi/v1/order"``, a bare path
(any method) or ``"*"``. Faults: ``"latency"`` (``seconds``), ``"timeout"`` (``seconds``; ``when`` =
``"after"``: processed, answered late; ``"before"``: answered late without processing), ``"5xx"``
(``status`` 503, ``when`` ``"before"``/``"after"``; ``"late"``: answered 504 at once and processed only when
the test calls ``process_late()``, as a request Binance reports "execution status unknown" (-1007) and
processes after our lookup said "Order does not exist"; with ``process_after=n`` it is processed just before
the n-th request that follows is handled), ``429`` (``retry_after``, ``used_weight``), ``418``
(``retry_after`` or ``until_ms``), an error code such as ``-1111``/``-4164``/``-2019``/``-1021``/``-1001``/
``-1007`` (answered without processing), ``"partial"`` (a MARKET order fills ``fraction``; the rest
``status`` EXPIRED), ``"lost"`` (processed, then the connection is closed without a response; ``mode``
``"503"`` answers 503 instead), ``"drop"`` (closed without processing), ``"empty"`` (a history answered as
``[]``: its latest rows not visible yet). ``down()`` closes the listening
socket (connections refused), ``up()`` opens it again on the same port.

Also served: ``/fapi/v1/ping``, ``/fapi/v1/time``, ``/fapi/v1/premiumIndex`` (the marks), ``/fapi/v1/klines``
(the bars of :mod:`fakes.market`), ``/fapi/v2|v3/positionRisk``, ``/fapi/v2|v3/account``, ``/fapi/v2|v3/balance``,
``/fapi/v1/userTrades``, ``/fapi/v1/forceOrders``, ``/fapi/v1/positionSide/dual`` (``hedge_mode``), ``/fapi/v1/income``, ``/fapi/v1/marginType``, ``/fapi/v1/leverage``, ``/fapi/v1/openOrders``,
``/fapi/v1/openAlgoOrders``. Every response carries ``X-MBX-USED-WEIGHT-1M`` (``used_weight``, 12 unless set);
``exchangeInfo`` carries Binance's ``rateLimits``; connections are not kept alive.
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import socket
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fakes.server import FakeServer, Request, Response

D = Decimal


@dataclass
class RawRequest(Request):
    raw_query: str = ""


@dataclass(frozen=True)
class SymbolSpec:
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    min_notional: Decimal
    max_leverage: int = 125


SYMBOLS: dict[str, SymbolSpec] = {
    "BTCUSDT": SymbolSpec(D("0.10"), D("0.001"), D("0.001"), D("100"), 125),
    "ETHUSDT": SymbolSpec(D("0.01"), D("0.001"), D("0.001"), D("20"), 100),
    "SOLUSDT": SymbolSpec(D("0.01"), D("1"), D("1"), D("5"), 75),
}

RATE_LIMITS = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
               {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
               {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300}]
CONDITIONAL = ("STOP_MARKET", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET", "STOP", "TAKE_PROFIT")

ERRORS: dict[int, tuple[int, str]] = {
    -1001: (503, "Internal error; unable to process your request. Please try again."),
    -1007: (408, "Timeout waiting for response from backend server. Send status unknown; execution status unknown."),
    -1021: (400, "Timestamp for this request is outside of the recvWindow."),
    -1022: (400, "Signature for this request is not valid."),
    -1013: (400, "Filter failure: LOT_SIZE"),
    -1111: (400, "Precision is over the maximum defined for this asset."),
    -1121: (400, "Invalid symbol."),
    -1127: (400, "More than 7 days between startTime and endTime."),
    -2011: (400, "Unknown order sent."),
    -2013: (400, "Order does not exist."),
    -2015: (401, "Invalid API-key, IP, or permissions for action."),
    -2019: (400, "Margin is insufficient."),
    -2021: (400, "Order would immediately trigger."),
    -2022: (400, "ReduceOnly Order is rejected."),
    -4003: (400, "Quantity less than or equal to zero."),
    -4015: (400, "Client order id is not valid."),
    -4046: (400, "No need to change margin type."),
    -4048: (400, "Margin type cannot be changed if there exists position."),
    -4028: (400, "Leverage is not valid"),
    -4116: (400, "ClientOrderId is duplicated."),
    -4045: (400, "Reach max stop order limit."),
    -4120: (400, "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead."),
    -4164: (400, "Order's notional must be no smaller than 100 (unless you choose reduce only)."),
    # MARKET_ORDER_REJECT: a market order in a thin book (a fast market), the best price beyond PERCENT_PRICE
    -4131: (400, "The counterparty's best price does not meet the PERCENT_PRICE filter limit."),
    -1102: (400, "Mandatory parameter was not sent, was empty/null, or malformed."),
    -1116: (400, "Invalid orderType."),
}


class _Drop(Exception):
    """Close the connection without answering."""


class _Reject(Exception):
    def __init__(self, code: int, msg: str | None = None, status: int | None = None):
        st, default = ERRORS.get(code, (400, "error"))
        self.code, self.msg, self.status = code, msg or default, status or st


def _dec(s: str, code: int = -1102) -> Decimal:
    try:
        d = D(s)
    except Exception:
        raise _Reject(code) from None
    if not d.is_finite():
        raise _Reject(code)
    return d


def _fmt(x: Decimal | float | int, places: int | None = None) -> str:
    if isinstance(x, int):
        x = float(x)
    if isinstance(x, float):
        return f"{x:.{8 if places is None else places}f}"
    s = format(x.normalize(), "f")
    return s


def _decimals(d: Decimal) -> int:
    return max(0, -d.normalize().as_tuple().exponent)


@dataclass
class _Fault:
    endpoint: str
    fault: Any
    times: int | None
    kw: dict[str, Any]


class FakeBinanceFutures(FakeServer):
    def __init__(self, api_key: str = "test-key", api_secret: str = "test-secret", *, wallet: float = 10_000.0,
                 taker_fee: float = 0.0004, mmr: float = 0.004, prices: dict[str, float] | None = None):
        super().__init__(self._route)
        self.api_key, self.api_secret = api_key, api_secret
        self.taker_fee, self.mmr = taker_fee, mmr
        self.fee_asset = "USDT"
        self.bnb = 0.0          # the futures wallet's BNB, which pays the fees when ``fee_asset = "BNB"``
        self.hedge_mode = False                           # GET /fapi/v1/positionSide/dual
        self.clock_offset_ms = 0
        self.used_weight = 12                             # what X-MBX-USED-WEIGHT-1M says on every answer
        self.balance = float(wallet)                      # USDT wallet (isolated margins included)
        self.prices: dict[str, float] = dict(prices or {"BTCUSDT": 42000.0, "ETHUSDT": 2500.0, "SOLUSDT": 100.0})
        self.leverage: dict[str, int] = {s: 20 for s in SYMBOLS}
        self.margin_type: dict[str, str] = {s: "CROSSED" for s in SYMBOLS}
        self.positions: dict[str, dict[str, Any]] = {}   # symbol -> {amt: Decimal, entry, margin}
        self.orders: dict[int, dict[str, Any]] = {}      # orderId -> regular order
        self.algo_orders: dict[int, dict[str, Any]] = {}  # algoId -> conditional order
        self.orders_by_client_id: dict[str, dict[str, Any]] = {}   # regular and algo, by client id
        self.post_counts: dict[str, int] = {}
        self.trades: list[dict[str, Any]] = []
        self.income: list[dict[str, Any]] = []
        self.faults: list[_Fault] = []
        self.is_down = False
        self.late: list[tuple[RawRequest, dict[str, str]]] = []   # timed-out requests still to be processed
        self._late_after: list[list[Any]] = []          # [requests to go, request, params] (process_after)
        self._ids = itertools.count(1_000_001)
        self._lock = threading.RLock()
        self._port = 0

    # --- clock and test controls -----------------------------------------------------------------
    def now_ms(self) -> int:
        return int(time.time() * 1000) + int(self.clock_offset_ms)

    def inject(self, endpoint: str, fault: Any, times: int | None = 1, **kw: Any) -> None:
        with self._lock:
            self.faults.append(_Fault(endpoint, fault, times, kw))

    def process_late(self) -> list[Response]:
        """Process the requests a ``"timeout", when="late"`` fault answered without processing."""
        with self._lock:
            todo, self.late = self.late, []
        out = []
        for req, params in todo:
            try:
                out.append(self._dispatch(req, params, None))
            except _Reject as r:
                out.append((r.status, {}, {"code": r.code, "msg": r.msg}))
        return out

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def set_price(self, symbol: str, price: float) -> None:
        """Move the mark price; conditional orders and liquidations the move crosses happen, in order."""
        with self._lock:
            old = self.prices.get(symbol, price)
            self.prices[symbol] = float(price)
            if symbol not in SYMBOLS:
                return
            for _ in range(100):
                ev = self._next_event(symbol, old, float(price))
                if ev is None:
                    break
                kind, at, ref = ev
                if kind == "algo":
                    self._trigger(ref)
                else:
                    self._liquidate(symbol, at)

    def apply_funding(self, symbol: str, rate: float, ts_ms: int | None = None) -> float:
        """Book a funding payment on the open position: income = -amt * mark * rate (longs pay rate > 0)."""
        with self._lock:
            pos = self.positions.get(symbol)
            if not pos:
                return 0.0
            income = -float(pos["amt"]) * self.prices[symbol] * rate
            self.balance += income
            # isolated margin: the position's isolated wallet pays it (doc "Event: Balance and Position Update")
            pos["margin"] += income
            self._income(symbol, "FUNDING_FEE", income, ts_ms)
            return income

    def down(self) -> None:
        """Stop listening: new connections are refused until :meth:`up`."""
        if self.is_down:
            return
        self.is_down = True
        self._httpd.shutdown()
        self._httpd.server_close()

    def up(self) -> None:
        if not self.is_down:
            return
        self._start(self._port)
        self.is_down = False

    def liquidation_price(self, symbol: str) -> float | None:
        pos = self.positions.get(symbol)
        if not pos:
            return None
        q = abs(float(pos["amt"]))
        if pos["amt"] > 0:
            return (pos["entry"] * q - pos["margin"]) / (q * (1 - self.mmr))
        return (pos["entry"] * q + pos["margin"]) / (q * (1 + self.mmr))

    # --- HTTP plumbing -------------------------------------------------------------------------------
    def __enter__(self) -> "FakeBinanceFutures":
        self._start(0)
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.is_down:
            self._httpd.shutdown()
            self._httpd.server_close()

    def _start(self, port: int) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                self.close_connection = True
                parts = urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                query = dict(parse_qsl(parts.query, keep_blank_values=True))
                req = RawRequest(self.command, parts.path, query, {k: v for k, v in self.headers.items()}, body,
                                 raw_query=parts.query)
                outer.requests.append(req)
                try:
                    status, headers, payload = outer.handle(req)
                except _Drop:
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                except Exception as e:  # a bug in the fake shows up as a 599 the test will notice
                    status, headers, payload = 599, {}, f"fake error: {type(e).__name__}: {e}"
                if isinstance(payload, bytes):
                    data, ctype = payload, "application/octet-stream"
                elif isinstance(payload, str):
                    data, ctype = payload.encode("utf-8"), "text/html"
                else:
                    import json
                    data, ctype = json.dumps(payload).encode("utf-8"), "application/json"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", headers.pop("Content-Type", ctype))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:   # the client gave up (timeout): nothing to answer
                    pass

            do_GET = do_POST = do_DELETE = do_PUT = _serve

            def log_message(self, *args: Any) -> None:
                pass

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except OSError:
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    # --- routing -------------------------------------------------------------------------------------------
    def _take_fault(self, req: RawRequest) -> _Fault | None:
        return self._take(lambda ep: ep == "*" or ep == req.path or ep == f"{req.method} {req.path}")

    def _take_named(self, name: str) -> _Fault | None:
        """A fault injected for an internal event (``"trigger"``), not a request."""
        return self._take(lambda ep: ep == name)

    def _take(self, matches) -> _Fault | None:
        """The first injected fault whose endpoint ``matches``, counted down (removed when used up)."""
        with self._lock:
            for f in self.faults:
                if matches(f.endpoint):
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self.faults.remove(f)
                    return f
        return None

    def _params(self, req: RawRequest) -> dict[str, str]:
        p = dict(parse_qsl(req.raw_query, keep_blank_values=True))
        if req.body:
            p.update(parse_qsl(req.body.decode("utf-8"), keep_blank_values=True))
        return p

    def _route(self, req: Request) -> Response:
        assert isinstance(req, RawRequest)
        params = self._params(req)
        with self._lock:
            for item in self._late_after:
                item[0] -= 1
            due = [(r, p) for n, r, p in self._late_after if n <= 0]
            self._late_after = [x for x in self._late_after if x[0] > 0]
        for r, p in due:              # a timed-out request the venue processes only now
            try:
                self._dispatch(r, p, None)
            except _Reject:
                pass
        if req.method == "POST" and req.path in ("/fapi/v1/order", "/fapi/v1/algoOrder"):
            cid = params.get("newClientOrderId") or params.get("clientAlgoId")
            if cid:
                with self._lock:
                    self.post_counts[cid] = self.post_counts.get(cid, 0) + 1
        fault = self._take_fault(req)
        after: _Fault | None = None
        if fault is not None:
            out = self._fault_before(fault)
            if out is not None:
                return out
            after = fault
            if fault.fault == "timeout" and fault.kw.get("when") == "late":
                with self._lock:
                    if fault.kw.get("process_after"):
                        self._late_after.append([int(fault.kw["process_after"]), req, params])
                    else:
                        self.late.append((req, params))
                time.sleep(fault.kw.get("seconds", 1.0))
                return 504, {}, "<html>gateway timeout</html>"
        try:
            status, headers, payload = self._dispatch(req, params, after)
        except _Reject as r:
            status, headers, payload = r.status, {}, {"code": r.code, "msg": r.msg}
        if after is not None:
            f, kw = after.fault, after.kw
            if f == "timeout" and kw.get("when", "after") == "after":
                time.sleep(kw.get("seconds", 1.0))
            elif f == "5xx" and kw.get("when") == "after":
                return kw.get("status", 503), {}, "<html><body>503 Service Unavailable</body></html>"
            elif f == "lost":
                if kw.get("mode") == "503":
                    return 503, {}, "<html><body>503 Service Unavailable</body></html>"
                raise _Drop()
        headers = dict(headers)
        headers.setdefault("X-MBX-USED-WEIGHT-1M", str(self.used_weight))
        return status, headers, payload

    def _fault_before(self, f: _Fault) -> Response | None:
        kw = f.kw
        if f.fault == "latency":
            time.sleep(kw.get("seconds", 0.1))
            return None
        if f.fault == "timeout":
            if kw.get("when") == "late":
                return None       # kept for process_late() by _route
            if kw.get("when", "after") == "before":
                time.sleep(kw.get("seconds", 1.0))
                return 504, {}, "<html>gateway timeout</html>"
            return None
        if f.fault == "5xx":
            if kw.get("when", "before") == "before":
                return kw.get("status", 503), {}, kw.get("body", "<html><body>503 Service Unavailable</body></html>")
            return None
        if f.fault in (429, "429"):
            if kw.get("orders"):
                # the ORDERS limiter (per account): "you will receive a 429 error without the Retry-After header"
                # (Binance LIMITS, "Order Rate Limits"); -1015 TOO_MANY_ORDERS
                return 429, {"X-MBX-USED-WEIGHT-1M": str(self.used_weight)}, \
                    {"code": -1015, "msg": "Too many new orders; current limit is 300 orders per TEN_SECONDS."}
            return 429, {"Retry-After": str(kw.get("retry_after", 7)),
                         "X-MBX-USED-WEIGHT-1M": str(kw.get("used_weight", 2401))}, \
                {"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute."}
        if f.fault in (418, "418"):
            until = kw.get("until_ms", self.now_ms() + 120_000)
            headers = {"Retry-After": str(kw["retry_after"])} if "retry_after" in kw else {}
            return 418, headers, {"code": -1003, "msg": f"Way too many requests; IP(127.0.0.1) banned until {until}. "
                                                      "Please use the websocket for live updates to avoid bans."}
        if f.fault == "drop":
            raise _Drop()
        if f.fault == "empty":     # a history that does not show the latest rows yet (it is not instantaneous)
            return 200, {"X-MBX-USED-WEIGHT-1M": str(self.used_weight)}, []
        if isinstance(f.fault, int) or (isinstance(f.fault, str) and f.fault.lstrip("-").isdigit()):
            code = int(f.fault)
            st, msg = ERRORS.get(code, (400, "error"))
            return kw.get("status", st), {"X-MBX-USED-WEIGHT-1M": str(self.used_weight)}, \
                {"code": code, "msg": kw.get("msg", msg)}
        return None   # "partial", "lost", "timeout"/"5xx" after: handled around the dispatch

    def _auth(self, req: RawRequest, params: dict[str, str]) -> None:
        if req.headers.get("X-MBX-APIKEY") != self.api_key:
            raise _Reject(-2015)
        total = req.raw_query + req.body.decode("utf-8")
        i = total.rfind("signature=")
        if i <= 0 or total[i - 1] != "&":
            raise _Reject(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        payload, sig = total[: i - 1], total[i + len("signature="):]
        good = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(good, sig):
            raise _Reject(-1022)
        try:
            ts = int(params["timestamp"])
            rw = int(params.get("recvWindow", 5000))
        except (KeyError, ValueError):
            raise _Reject(-1102, "Mandatory parameter 'timestamp' was not sent or malformed.") from None
        now = self.now_ms()
        if ts > now + 1000 or now - ts > rw:
            raise _Reject(-1021)

    def _dispatch(self, req: RawRequest, params: dict[str, str], fault: _Fault | None) -> Response:
        m, p = req.method, req.path
        public = {
            ("GET", "/fapi/v1/ping"): lambda: {},
            ("GET", "/fapi/v1/time"): lambda: {"serverTime": self.now_ms()},
            ("GET", "/fapi/v1/exchangeInfo"): self._exchange_info,
            ("GET", "/fapi/v1/premiumIndex"): lambda: self._premium_index(params),
            ("GET", "/fapi/v1/klines"): lambda: self._klines(params),
        }
        if (m, p) in public:
            return 200, {}, public[(m, p)]()
        signed = {
            ("POST", "/fapi/v1/order"): lambda: self._new_order(params, fault),
            ("GET", "/fapi/v1/order"): lambda: self._get_order(params),
            ("DELETE", "/fapi/v1/order"): lambda: self._cancel_order(params),
            ("GET", "/fapi/v1/openOrders"): lambda: self._open_orders(params),
            ("POST", "/fapi/v1/algoOrder"): lambda: self._new_algo(params),
            ("GET", "/fapi/v1/algoOrder"): lambda: self._get_algo(params),
            ("DELETE", "/fapi/v1/algoOrder"): lambda: self._cancel_algo(params),
            ("GET", "/fapi/v1/openAlgoOrders"): lambda: self._open_algos(params),
            ("GET", "/fapi/v1/userTrades"): lambda: self._user_trades(params),
            ("GET", "/fapi/v1/forceOrders"): lambda: self._force_orders(params),
            ("GET", "/fapi/v1/positionSide/dual"): lambda: {"dualSidePosition": self.hedge_mode},
            ("GET", "/fapi/v1/income"): lambda: self._income_history(params),
            ("GET", "/fapi/v2/positionRisk"): lambda: self._position_risk(params),
            ("GET", "/fapi/v3/positionRisk"): lambda: [r for r in self._position_risk(params)
                                                        if float(r["positionAmt"]) != 0],
            ("GET", "/fapi/v2/account"): self._account,
            ("GET", "/fapi/v3/account"): self._account,
            ("GET", "/fapi/v2/balance"): lambda: self._account()["assets"],
            ("GET", "/fapi/v3/balance"): lambda: self._account()["assets"],
            ("POST", "/fapi/v1/marginType"): lambda: self._margin_type(params),
            ("POST", "/fapi/v1/leverage"): lambda: self._set_leverage(params),
        }
        if (m, p) not in signed:
            return 404, {}, "<html>Not Found</html>"
        self._auth(req, params)
        with self._lock:
            return 200, {}, signed[(m, p)]()

    # --- public --------------------------------------------------------------------------------------------
    def _exchange_info(self) -> dict[str, Any]:
        syms = []
        for s, spec in SYMBOLS.items():
            syms.append({
                "symbol": s, "pair": s, "contractType": "PERPETUAL", "status": "TRADING",
                "baseAsset": s[:-4], "quoteAsset": "USDT", "marginAsset": "USDT",
                "pricePrecision": _decimals(spec.tick), "quantityPrecision": _decimals(spec.step),
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": _fmt(spec.tick), "maxPrice": "4529764",
                     "tickSize": _fmt(spec.tick)},
                    {"filterType": "LOT_SIZE", "stepSize": _fmt(spec.step), "maxQty": "1000",
                     "minQty": _fmt(spec.min_qty)},
                    {"filterType": "MARKET_LOT_SIZE", "stepSize": _fmt(spec.step), "maxQty": "120",
                     "minQty": _fmt(spec.min_qty)},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                    {"filterType": "MIN_NOTIONAL", "notional": _fmt(spec.min_notional)},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                     "multiplierDecimal": "4"},
                ],
                "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                               "TRAILING_STOP_MARKET"],
            })
        return {"timezone": "UTC", "serverTime": self.now_ms(), "rateLimits": RATE_LIMITS, "assets": [], "symbols": syms}

    def _premium_index(self, params: dict[str, str]) -> Any:
        def one(s: str) -> dict[str, Any]:
            return {"symbol": s, "markPrice": _fmt(self.prices[s]), "indexPrice": _fmt(self.prices[s]),
                    "lastFundingRate": "0.00010000", "nextFundingTime": 0, "time": self.now_ms()}
        s = params.get("symbol")
        if s:
            if s not in self.prices:
                raise _Reject(-1121)
            return one(s)
        return [one(s) for s in self.prices]

    def _klines(self, params: dict[str, str]) -> list[list[Any]]:
        """Bars of :mod:`fakes.market` (their own price path, not the mark set by ``set_price``)."""
        from fakes.market import bar, open_times

        sym, _ = self._symbol(params)
        iv = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}.get(params.get("interval", ""))
        if iv is None:
            raise _Reject(-1120, "Invalid interval.")
        now = self.now_ms() // 1000
        limit = int(params.get("limit", 500))
        start = int(params.get("startTime", (now - limit * iv) * 1000)) // 1000
        end = int(params.get("endTime", now * 1000)) // 1000
        rows = []
        for t in open_times(start, end, now, iv)[:limit]:
            o, h, lo, c, v = bar(sym, t, iv)
            rows.append([t * 1000, f"{o:.6f}", f"{h:.6f}", f"{lo:.6f}", f"{c:.6f}", f"{v:.3f}",
                         (t + iv) * 1000 - 1, "0", 10, "0", "0", "0"])
        return rows

    # --- validation helpers ------------------------------------------------------------------------
    def _symbol(self, params: dict[str, str]) -> tuple[str, SymbolSpec]:
        s = params.get("symbol", "")
        if s not in SYMBOLS:
            raise _Reject(-1121)
        return s, SYMBOLS[s]

    def _qty(self, params: dict[str, str], spec: SymbolSpec) -> Decimal:
        if "quantity" not in params:
            raise _Reject(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        q = _dec(params["quantity"])
        if q <= 0:
            raise _Reject(-4003)
        if _decimals(q) > _decimals(spec.step):
            raise _Reject(-1111)
        if q < spec.min_qty or q % spec.step != 0:
            raise _Reject(-1013, "Filter failure: MARKET_LOT_SIZE")
        return q

    def _price_param(self, params: dict[str, str], key: str, spec: SymbolSpec) -> Decimal:
        if key not in params:
            raise _Reject(-1102, f"Mandatory parameter '{key}' was not sent, was empty/null, or malformed.")
        v = _dec(params[key])
        if v <= 0:
            raise _Reject(-1102)
        if _decimals(v) > _decimals(spec.tick):
            raise _Reject(-1111)
        if v % spec.tick != 0:
            raise _Reject(-4014, "Price not increased by tick size.")
        return v

    def _cid(self, cid: str | None) -> str:
        import re
        if cid is None:
            cid = f"x-fake{next(self._ids)}"
        if not re.fullmatch(r"[.A-Z:/a-z0-9_-]{1,36}", cid):
            raise _Reject(-4015)
        prev = self.orders_by_client_id.get(cid)
        if prev is not None and (prev.get("status") in ("NEW", "PARTIALLY_FILLED") or prev.get("algoStatus") == "NEW"):
            raise _Reject(-4116)
        return cid

    @staticmethod
    def _bool(params: dict[str, str], key: str) -> bool:
        v = params.get(key, "false").lower()
        if v not in ("true", "false"):
            raise _Reject(-1102, f"Parameter '{key}' malformed.")
        return v == "true"

    # --- regular orders ------------------------------------------------------------------------------
    def _new_order(self, params: dict[str, str], fault: _Fault | None) -> dict[str, Any]:
        sym, spec = self._symbol(params)
        typ = params.get("type", "")
        if typ in CONDITIONAL:
            raise _Reject(-4120)
        if typ != "MARKET":
            raise _Reject(-1116)
        side = params.get("side")
        if side not in ("BUY", "SELL"):
            raise _Reject(-1102, "Parameter 'side' malformed.")
        qty = self._qty(params, spec)
        reduce_only = self._bool(params, "reduceOnly")
        cid = self._cid(params.get("newClientOrderId"))
        price = self.prices[sym]
        pos = self.positions.get(sym)
        amt = pos["amt"] if pos else D(0)
        sgn = 1 if side == "BUY" else -1
        if reduce_only:
            if amt == 0 or (amt > 0) == (sgn > 0):
                raise _Reject(-2022)
        elif qty * D(str(price)) < spec.min_notional:
            raise _Reject(-4164, f"Order's notional must be no smaller than {_fmt(spec.min_notional)} "
                                 "(unless you choose reduce only).")
        fill = qty
        if reduce_only:
            fill = min(qty, abs(amt))
        status = "FILLED"
        if fault is not None and fault.fault == "partial":
            units = qty * D(str(fault.kw.get("fraction", 0.5))) / spec.step
            part = units.to_integral_value(rounding="ROUND_DOWN") * spec.step
            fill = min(fill, part)
            status = fault.kw.get("status", "EXPIRED")
        # margin check on the part that opens or increases exposure
        opening = fill if (amt == 0 or (amt > 0) == (sgn > 0)) else max(D(0), fill - abs(amt))
        lev = self.leverage[sym]
        need = float(opening) * price / lev + float(fill) * price * self.taker_fee
        if opening > 0 and need > self._available() + 1e-9:
            raise _Reject(-2019)
        oid = next(self._ids)
        now = self.now_ms()
        order = {
            "orderId": oid, "symbol": sym, "status": status, "clientOrderId": cid, "price": "0",
            "avgPrice": _fmt(price) if fill > 0 else "0", "origQty": _fmt(qty), "executedQty": _fmt(fill),
            "cumQty": _fmt(fill), "cumQuote": _fmt(float(fill) * price), "timeInForce": "GTC", "type": "MARKET",
            "reduceOnly": reduce_only, "closePosition": False, "side": side, "positionSide": "BOTH",
            "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": "MARKET",
            "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
            "time": now, "updateTime": now,
        }
        self.orders[oid] = order
        self.orders_by_client_id[cid] = order
        if fill > 0:
            self._execute(sym, side, fill, price, oid)
        if params.get("newOrderRespType", "ACK") == "ACK":
            return {**order, "status": "NEW", "executedQty": "0", "cumQty": "0", "cumQuote": "0", "avgPrice": "0.00"}
        return dict(order)

    def _execute(self, sym: str, side: str, qty: Decimal, price: float, oid: int, *, liquidation: bool = False,
                 realized_override: float | None = None) -> None:
        sgn = D(1) if side == "BUY" else D(-1)
        pos = self.positions.get(sym)
        amt = pos["amt"] if pos else D(0)
        lev = self.leverage[sym]
        realized = 0.0
        if amt != 0 and (amt > 0) != (sgn > 0):        # reduce / close / flip
            closed = min(qty, abs(amt))
            direction = 1.0 if amt > 0 else -1.0
            realized = (price - pos["entry"]) * float(closed) * direction
            released = pos["margin"] * float(closed / abs(amt))
            pos["margin"] -= released
            pos["amt"] = amt + sgn * closed
            rest = qty - closed
            if pos["amt"] == 0:
                del self.positions[sym]
                pos = None
            if rest > 0:
                self.positions[sym] = {"amt": sgn * rest, "entry": price, "margin": float(rest) * price / lev}
        else:
            if pos is None:
                self.positions[sym] = {"amt": sgn * qty, "entry": price, "margin": float(qty) * price / lev}
            else:
                new_amt = amt + sgn * qty
                pos["entry"] = (pos["entry"] * float(abs(amt)) + price * float(qty)) / float(abs(new_amt))
                pos["amt"] = new_amt
                pos["margin"] += float(qty) * price / lev
        if realized_override is not None:
            realized = realized_override
        fee_usdt = 0.0 if liquidation else float(qty) * price * self.taker_fee
        if self.fee_asset == "USDT" or liquidation:
            commission, asset = fee_usdt, "USDT"
            self.balance += realized - fee_usdt
        else:
            # BNB fee discount: the fee comes out of the wallet's BNB, the USDT balance moves by the P&L only
            # (Binance FAQ "Binance Futures Fee Structure & Fee Calculations")
            commission, asset = fee_usdt / self.prices[f"{self.fee_asset}USDT"], self.fee_asset
            self.balance += realized
            self.bnb -= commission
        tid = next(self._ids)
        now = self.now_ms()
        self.trades.append({
            "symbol": sym, "id": tid, "orderId": oid, "side": side, "price": _fmt(price), "qty": _fmt(qty),
            "realizedPnl": _fmt(realized), "quoteQty": _fmt(float(qty) * price), "commission": _fmt(commission),
            "commissionAsset": asset, "time": now, "positionSide": "BOTH", "buyer": side == "BUY",
            "maker": False, "marginAsset": "USDT",
        })
        if realized:
            self._income(sym, "REALIZED_PNL", realized, now, trade_id=tid)
        if fee_usdt:
            self._income(sym, "COMMISSION", -commission, now, trade_id=tid, asset=asset)

    def _income(self, sym: str, typ: str, amount: float, ts_ms: int | None, trade_id: int | str = "",
                asset: str = "USDT") -> None:
        self.income.append({"symbol": sym, "incomeType": typ, "income": _fmt(amount), "asset": asset,
                            "info": typ, "time": ts_ms if ts_ms is not None else self.now_ms(),
                            "tranId": next(self._ids), "tradeId": str(trade_id)})

    def _available(self) -> float:
        return self.balance - sum(p["margin"] for p in self.positions.values())

    def _find_order(self, params: dict[str, str]) -> dict[str, Any] | None:
        sym = params.get("symbol")
        o = None
        if params.get("orderId"):
            o = self.orders.get(int(params["orderId"]))
        elif params.get("origClientOrderId"):
            o = self.orders_by_client_id.get(params["origClientOrderId"])
            if o is not None and "algoId" in o:
                o = None
        else:
            raise _Reject(-1102, "Either orderId or origClientOrderId must be sent.")
        if o is None or o["symbol"] != sym:
            return None
        return o

    def _get_order(self, params: dict[str, str]) -> dict[str, Any]:
        self._symbol(params)
        o = self._find_order(params)
        if o is None:
            raise _Reject(-2013)
        return dict(o)

    def _cancel_order(self, params: dict[str, str]) -> dict[str, Any]:
        self._symbol(params)
        o = self._find_order(params)
        if o is None or o["status"] not in ("NEW", "PARTIALLY_FILLED"):
            raise _Reject(-2011)
        o["status"], o["updateTime"] = "CANCELED", self.now_ms()
        return dict(o)

    def _open_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        s = params.get("symbol")
        return [dict(o) for o in self.orders.values()
                if o["status"] in ("NEW", "PARTIALLY_FILLED") and (not s or o["symbol"] == s)]

    # --- algo (conditional) orders --------------------------------------------------------------------
    def _new_algo(self, params: dict[str, str]) -> dict[str, Any]:
        if params.get("algoType") != "CONDITIONAL":
            raise _Reject(-1102, "Parameter 'algoType' malformed.")
        sym, spec = self._symbol(params)
        typ = params.get("type", "")
        if typ not in CONDITIONAL:
            raise _Reject(-1116)
        side = params.get("side")
        if side not in ("BUY", "SELL"):
            raise _Reject(-1102, "Parameter 'side' malformed.")
        close_position = self._bool(params, "closePosition")
        reduce_only = self._bool(params, "reduceOnly")
        if close_position and (reduce_only or "quantity" in params):
            raise _Reject(-1106, "Parameter 'reduceOnly' sent when not required.")
        qty = D(0) if close_position else self._qty(params, spec)
        trigger = self._price_param(params, "triggerPrice", spec) if typ != "TRAILING_STOP_MARKET" else D(0)
        working = params.get("workingType", "CONTRACT_PRICE")
        if working not in ("MARK_PRICE", "CONTRACT_PRICE"):
            raise _Reject(-1102, "Parameter 'workingType' malformed.")
        cid = self._cid(params.get("clientAlgoId"))
        if typ != "TRAILING_STOP_MARKET" and self._crossed(typ, side, float(trigger), self.prices[sym]):
            raise _Reject(-2021)
        aid = next(self._ids)
        now = self.now_ms()
        algo = {
            "algoId": aid, "clientAlgoId": cid, "algoType": "CONDITIONAL", "orderType": typ, "symbol": sym,
            "side": side, "positionSide": "BOTH", "timeInForce": "GTC", "quantity": _fmt(qty),
            "algoStatus": "NEW", "triggerPrice": _fmt(trigger), "price": "0", "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": working, "priceMatch": "NONE",
            "closePosition": close_position, "priceProtect": self._bool(params, "priceProtect"),
            "reduceOnly": reduce_only, "activatePrice": "", "callbackRate": "", "createTime": now,
            "updateTime": now, "triggerTime": 0, "goodTillDate": 0,
            "actualOrderId": "", "actualPrice": "0.00000",
        }
        self.algo_orders[aid] = algo
        self.orders_by_client_id[cid] = algo
        return {k: v for k, v in algo.items() if k not in ("actualOrderId", "actualPrice")}

    @staticmethod
    def _crossed(typ: str, side: str, trigger: float, price: float) -> bool:
        up = (typ.startswith("STOP") and side == "BUY") or (typ.startswith("TAKE_PROFIT") and side == "SELL")
        return price >= trigger if up else price <= trigger

    def _find_algo(self, params: dict[str, str]) -> dict[str, Any] | None:
        extra = set(params) - {"algoId", "clientAlgoId", "recvWindow", "timestamp", "signature"}
        if extra:   # Query / Cancel Algo Order take no symbol (Binance docs); the fake is strict about it
            raise _Reject(-1104, f"Not all sent parameters were read; unexpected: {', '.join(sorted(extra))}.")
        if params.get("algoId"):
            a = self.algo_orders.get(int(params["algoId"]))
        elif params.get("clientAlgoId"):
            a = self.orders_by_client_id.get(params["clientAlgoId"])
            if a is not None and "algoId" not in a:
                a = None
        else:
            raise _Reject(-1102, "Either algoId or clientAlgoId must be sent.")
        return a

    def _get_algo(self, params: dict[str, str]) -> dict[str, Any]:
        a = self._find_algo(params)
        if a is None:
            raise _Reject(-2013)
        return dict(a)

    def _cancel_algo(self, params: dict[str, str]) -> dict[str, Any]:
        a = self._find_algo(params)
        if a is None or a["algoStatus"] != "NEW":
            raise _Reject(-2011)
        a["algoStatus"], a["updateTime"] = "CANCELED", self.now_ms()
        return {"algoId": a["algoId"], "clientAlgoId": a["clientAlgoId"], "code": "200", "msg": "success"}

    def _open_algos(self, params: dict[str, str]) -> list[dict[str, Any]]:
        s = params.get("symbol")
        return [dict(a) for a in self.algo_orders.values() if a["algoStatus"] == "NEW" and (not s or a["symbol"] == s)]

    def _next_event(self, sym: str, old: float, new: float) -> tuple[str, float, Any] | None:
        events: list[tuple[float, str, float, Any]] = []
        for a in self.algo_orders.values():
            if a["symbol"] == sym and a["algoStatus"] == "NEW" and a["orderType"] != "TRAILING_STOP_MARKET":
                trig = float(a["triggerPrice"])
                if self._crossed(a["orderType"], a["side"], trig, new):
                    events.append((abs(trig - old), "algo", trig, a))
        liq = self.liquidation_price(sym)
        if liq is not None:
            amt = self.positions[sym]["amt"]
            if (amt > 0 and new <= liq) or (amt < 0 and new >= liq):
                events.append((abs(liq - old), "liq", liq, sym))
        if not events:
            return None
        events.sort(key=lambda e: (e[0], e[1] != "liq"))
        _, kind, at, ref = events[0]
        return kind, at, ref

    def _trigger(self, a: dict[str, Any]) -> None:
        sym = a["symbol"]
        now = self.now_ms()
        a["triggerTime"] = a["updateTime"] = now
        pos = self.positions.get(sym)
        amt = pos["amt"] if pos else D(0)
        sgn = 1 if a["side"] == "BUY" else -1
        reduces = amt != 0 and (amt > 0) != (sgn > 0)
        if (a["reduceOnly"] or a["closePosition"]) and not reduces:
            a["algoStatus"] = "EXPIRED"
            return
        qty = abs(amt) if a["closePosition"] else D(a["quantity"])
        if a["reduceOnly"]:
            qty = min(qty, abs(amt))
        price = self.prices[sym]
        oid = next(self._ids)
        fault = self._take_named("trigger")
        fill, status = qty, "FILLED"
        if fault is not None and fault.fault == "partial":
            step = SYMBOLS[sym].step
            fill = (qty * D(str(fault.kw.get("fraction", 0.5))) / step).to_integral_value(rounding="ROUND_DOWN") * step
            status = "EXPIRED"
        order = {
            "orderId": oid, "symbol": sym, "status": status, "clientOrderId": f"algo-{a['algoId']}",
            "price": "0", "avgPrice": _fmt(price) if fill > 0 else "0", "origQty": _fmt(qty),
            "executedQty": _fmt(fill), "cumQty": _fmt(fill), "cumQuote": _fmt(float(fill) * price),
            "timeInForce": "GTC", "type": "MARKET",
            "reduceOnly": bool(a["reduceOnly"] or a["closePosition"]), "closePosition": a["closePosition"],
            "side": a["side"], "positionSide": "BOTH", "stopPrice": "0", "workingType": a["workingType"],
            "priceProtect": False, "origType": "MARKET", "time": now, "updateTime": now,
        }
        self.orders[oid] = order
        if fill > 0:
            self._execute(sym, a["side"], fill, price, oid)
        a["algoStatus"], a["actualOrderId"], a["actualPrice"] = "FINISHED", str(oid), _fmt(price)

    def _forced_order(self, sym: str, side: str, qty: Decimal, price: float, prefix: str) -> int:
        """The venue's own filled order that closes (part of) a position: a liquidation (``autoclose-``) or an
        auto-deleveraging (``adl_autoclose``), as "User's Force Orders" lists them."""
        oid = next(self._ids)
        now = self.now_ms()
        cid = f"{prefix}-{oid}"
        order = {
            "orderId": oid, "symbol": sym, "status": "FILLED", "clientOrderId": cid, "price": _fmt(price),
            "avgPrice": _fmt(price), "origQty": _fmt(qty), "executedQty": _fmt(qty), "cumQty": _fmt(qty),
            "cumQuote": _fmt(float(qty) * price), "timeInForce": "IOC", "type": "LIMIT", "reduceOnly": True,
            "closePosition": False, "side": side, "positionSide": "BOTH", "stopPrice": "0",
            "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": "LIMIT", "time": now, "updateTime": now,
        }
        self.orders[oid] = order
        self.orders_by_client_id[cid] = order
        return oid

    def _liquidate(self, sym: str, at: float) -> None:
        pos = self.positions[sym]
        side = "SELL" if pos["amt"] > 0 else "BUY"
        qty = abs(pos["amt"])
        oid = self._forced_order(sym, side, qty, at, "autoclose")
        self._execute(sym, side, qty, at, oid, liquidation=True, realized_override=-pos["margin"])

    def adl(self, symbol: str, qty: float, price: float) -> None:
        """Auto-deleveraging: the venue closes ``qty`` of the position at ``price`` (a counterparty's bankruptcy
        price) under an order of its own (``adl_autoclose-``, listed by "User's Force Orders"), without a fee."""
        with self._lock:
            pos = self.positions[symbol]
            side = "SELL" if pos["amt"] > 0 else "BUY"
            now = self.now_ms()
            # "any open orders will be canceled" (the ADL notice): the trader's resting orders and algo orders
            for o in self.orders.values():
                if o["status"] in ("NEW", "PARTIALLY_FILLED"):
                    o.update(status="CANCELED", updateTime=now)
            for a in self.algo_orders.values():
                if a.get("algoStatus") == "NEW":
                    a.update(algoStatus="CANCELED", updateTime=now)
            q = D(str(qty))
            oid = self._forced_order(symbol, side, q, price, "adl_autoclose")
            self._execute(symbol, side, q, price, oid, liquidation=True)

    # --- account ---------------------------------------------------------------------------------------
    def _user_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        sym, _ = self._symbol(params)
        out = [t for t in self.trades if t["symbol"] == sym]
        if params.get("orderId"):
            out = [t for t in out if t["orderId"] == int(params["orderId"])]
        # doc "Account Trade List": no startTime/endTime: the last 7 days; a range of at most 7 days
        start, end = params.get("startTime"), params.get("endTime")
        if start and end and int(end) - int(start) > 7 * 86_400_000:
            raise _Reject(-1127)
        if not start and not end:
            start = str(self.now_ms() - 7 * 86_400_000)
        if start:
            out = [t for t in out if t["time"] >= int(start)]
        if end:
            out = [t for t in out if t["time"] <= int(end)]
        return [dict(t) for t in out[-int(params.get("limit", 500)):]]

    def _force_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """The account's liquidation orders (``autoclose-``), newest first, as "User's Force Orders" answers."""
        out = [o for o in self.orders.values() if str(o["clientOrderId"]).startswith(("autoclose-", "adl_autoclose"))]
        if params.get("symbol"):
            out = [o for o in out if o["symbol"] == params["symbol"]]
        end = int(params.get("endTime") or self.now_ms())
        start = int(params["startTime"]) if params.get("startTime") else end - 7 * 86_400_000   # the docs' default
        out = [o for o in out if start <= o["time"] <= end]
        return [dict(o) for o in sorted(out, key=lambda o: -o["time"])[: int(params.get("limit", 50))]]

    def _income_history(self, params: dict[str, str]) -> list[dict[str, Any]]:
        out = list(self.income)
        if params.get("symbol"):
            out = [r for r in out if r["symbol"] == params["symbol"]]
        if params.get("incomeType"):
            out = [r for r in out if r["incomeType"] == params["incomeType"]]
        if params.get("startTime"):
            out = [r for r in out if r["time"] >= int(params["startTime"])]
        if params.get("endTime"):
            out = [r for r in out if r["time"] <= int(params["endTime"])]
        out.sort(key=lambda r: r["time"])
        return [dict(r) for r in out[: int(params.get("limit", 100))]]

    def _upnl(self, sym: str) -> float:
        pos = self.positions.get(sym)
        return 0.0 if not pos else (self.prices[sym] - pos["entry"]) * float(pos["amt"])

    def _position_risk(self, params: dict[str, str]) -> list[dict[str, Any]]:
        rows = []
        for sym in SYMBOLS:
            if params.get("symbol") and params["symbol"] != sym:
                continue
            pos = self.positions.get(sym)
            amt = pos["amt"] if pos else D(0)
            upnl = self._upnl(sym)
            margin = pos["margin"] if pos else 0.0
            liq = self.liquidation_price(sym) or 0.0
            rows.append({
                "symbol": sym, "positionAmt": _fmt(amt) if amt else "0.000",
                "entryPrice": _fmt(pos["entry"]) if pos else "0.0", "breakEvenPrice": "0.0",
                "markPrice": _fmt(self.prices[sym]), "unRealizedProfit": _fmt(upnl), "liquidationPrice": _fmt(liq),
                "leverage": str(self.leverage[sym]), "maxNotionalValue": "1000000",
                "marginType": "isolated" if self.margin_type[sym] == "ISOLATED" else "cross",
                "isolatedMargin": _fmt(margin + upnl if pos else 0.0), "isolatedWallet": _fmt(margin),
                "isAutoAddMargin": "false", "positionSide": "BOTH",
                "notional": _fmt(float(amt) * self.prices[sym]), "updateTime": self.now_ms(),
            })
        return rows

    def _account(self) -> dict[str, Any]:
        upnl = sum(self._upnl(s) for s in self.positions)
        avail = self._available()
        asset = {"asset": "USDT", "walletBalance": _fmt(self.balance), "unrealizedProfit": _fmt(upnl),
                 "marginBalance": _fmt(self.balance + upnl), "maintMargin": "0", "initialMargin": "0",
                 "positionInitialMargin": "0", "openOrderInitialMargin": "0", "crossWalletBalance": _fmt(avail),
                 "crossUnPnl": "0.00000000", "availableBalance": _fmt(avail), "maxWithdrawAmount": _fmt(avail),
                 "balance": _fmt(self.balance), "marginAvailable": True, "updateTime": self.now_ms()}
        bnb = [{"asset": "BNB", "walletBalance": _fmt(self.bnb), "unrealizedProfit": "0",
                "marginBalance": _fmt(self.bnb), "availableBalance": _fmt(self.bnb), "crossWalletBalance": _fmt(self.bnb),
                "maxWithdrawAmount": _fmt(self.bnb), "updateTime": self.now_ms()}] if self.bnb else []
        return {"totalWalletBalance": _fmt(self.balance), "totalUnrealizedProfit": _fmt(upnl),
                "totalMarginBalance": _fmt(self.balance + upnl), "availableBalance": _fmt(avail),
                "maxWithdrawAmount": _fmt(avail), "assets": [asset] + bnb, "positions": []}

    def _margin_type(self, params: dict[str, str]) -> dict[str, Any]:
        sym, _ = self._symbol(params)
        mt = params.get("marginType", "").upper()
        if mt not in ("ISOLATED", "CROSSED"):
            raise _Reject(-1102, "Parameter 'marginType' malformed.")
        if self.margin_type[sym] == mt:
            raise _Reject(-4046)
        if sym in self.positions:
            raise _Reject(-4048)
        self.margin_type[sym] = mt
        return {"code": 200, "msg": "success"}

    def _set_leverage(self, params: dict[str, str]) -> dict[str, Any]:
        sym, spec = self._symbol(params)
        try:
            lev = int(params.get("leverage", ""))
        except ValueError:
            raise _Reject(-1102, "Parameter 'leverage' malformed.") from None
        if not 1 <= lev <= spec.max_leverage:
            raise _Reject(-4028, f"Leverage {lev} is not valid")
        self.leverage[sym] = lev
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": sym}
