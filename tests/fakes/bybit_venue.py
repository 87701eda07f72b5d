"""Fake Bybit v5 REST for USDT perpetuals ("linear"), one-way mode, isolated margin, on 127.0.0.1.

Public: ``GET /v5/market/time``, ``GET /v5/market/instruments-info``.
Private (v5 auth checked exactly: ``X-BAPI-SIGN`` = HMAC-SHA256(secret, timestamp + apiKey + recvWindow +
raw query string | raw JSON body); unknown key -> 10003, bad signature -> 10004, timestamp outside
``[server - recvWindow, server + 1000)`` -> 10002):
``POST /v5/order/create|cancel``, ``GET /v5/order/realtime|history``, ``GET /v5/execution/list``,
``GET /v5/position/list``, ``POST /v5/position/switch-isolated|set-leverage``,
``POST /v5/account/set-margin-mode``, ``GET /v5/account/info``, ``GET /v5/account/wallet-balance``,
``GET /v5/account/transaction-log``. An orderLinkId can never be reused (live or finished; Bybit: perps'
orderLinkId is "always unique"): 110072 "OrderLinkedID is duplicate".

Order queries as Bybit documents them: ``/v5/order/realtime`` returns open orders (``openOnly=0``, the default)
or the account's 500 most recent closed orders (``openOnly=1``; 2 on a classic account), and ignores
``openOnly`` when queried by ``orderId``/``orderLinkId`` (open or recently closed). ``restart()`` empties that
closed-order cache, as a Bybit restart does. ``/v5/order/history`` holds closed orders, each only
``history_lag_s`` (default 0) after it finished ("the data returned from this endpoint may delay"), created in
``startTime``..``endTime`` (at most 7 days; none given: the past 7 days, by id too), one that ended with no fill
for 24 hours only. ``/v5/execution/list`` answers 7 days the same way; asked by ``orderId``/``orderLinkId`` it
ignores every other parameter, its times too.

Market orders fill at once at the price the test sets (``set_price("BTCUSDT", 42000.0)``), 5.5 bps taker
fee. Conditional orders (``triggerPrice``/``triggerDirection``) rest as ``Untriggered`` and fill when a
``set_price`` crosses them; a position is liquidated when the price crosses its ``liqPrice`` (isolated: the
position margin is lost). ``settle_funding(symbol, rate)`` pays/charges funding (longs pay a positive rate).
``deliver(symbol, price)``: a delisting closes the position (execType ``Delivery``). ``hedge_mode``: orders with
``positionIdx`` 0 are refused (10001 "position idx not match position mode").
``post_counts[orderLinkId]`` counts every create POST that reached the venue.

Faults, one-shot, for the next matching request (``path`` defaults to ``/v5/order/create``):
``fail_next(kind, path=None, **kw)`` with kind ``latency`` (``s``), ``timeout`` (processed, the answer comes
after ``s`` seconds), ``5xx`` (502, not processed), ``rate_limit`` (retCode ``code``, default 10006, + reset
header ``reset_ms`` ahead; 429 "high server load" and 10018 "IP rate limit" answer so too),
``403`` (IP limit), ``malformed`` (200 with a truncated JSON body), ``10002``, ``reject`` (``code``, ``msg``:
e.g. precision 170136, min notional 110094, insufficient balance 110007; the natural checks raise 110094,
110007, 110017, 110092/110093 and 10001 by themselves), ``partial`` (``ratio`` of a market order fills, the
rest is cancelled), ``lost`` (processed, then the connection is dropped before any answer).
``down()`` / ``up()``: connections refused / accepted again on the same port.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import ThreadingHTTPServer
from typing import Any

from fakes.server import FakeServer, Request, Response

TAKER_FEE = 0.00055
MAKER_FEE = 0.0002         # what an auto-deleveraged position pays (help centre, "What is Auto-Deleveraging")
MMR = 0.005
OPEN_STATES = ("New", "PartiallyFilled", "Untriggered")
_tl = threading.local()


@dataclass
class Fault:
    kind: str
    path: str
    kw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pos:
    side: str = ""          # Buy / Sell / "" (flat)
    size: float = 0.0
    avg: float = 0.0
    im: float = 0.0         # isolated position margin


def _d(x: float) -> str:
    return format(Decimal(repr(round(x, 10))).normalize(), "f")


def _ok(result: Any) -> dict:
    return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": int(time.time() * 1000)}


def _err(code: int, msg: str) -> dict:
    return {"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": int(time.time() * 1000)}


class FakeBybit(FakeServer):
    def __init__(self, api_key: str = "test-key", api_secret: str = "test-secret", wallet: float = 10_000.0,
                 unified: bool = True):
        super().__init__(self._route)
        self.keys = {api_key: api_secret}
        self.unified = unified
        self.instruments = {
            "BTCUSDT": {"tickSize": "0.10", "qtyStep": "0.001", "minOrderQty": "0.001", "minNotionalValue": "5"},
            "ETHUSDT": {"tickSize": "0.01", "qtyStep": "0.01", "minOrderQty": "0.01", "minNotionalValue": "5"},
        }
        self.prices: dict[str, float] = {"BTCUSDT": 42000.0, "ETHUSDT": 2500.0}
        self.wallet = wallet
        self.orders: dict[str, dict] = {}            # orderId -> order
        self.positions: dict[str, Pos] = {}
        self.leverage: dict[str, int] = {}
        self.isolated: set[str] = set()
        self.margin_mode = "REGULAR_MARGIN"
        self.margin_mode_sets = 0
        self.executions: list[dict] = []
        self.txlog: list[dict] = []
        self.post_counts: Counter[str] = Counter()
        self.faults: list[Fault] = []
        self.clock_offset_ms = 0                     # the venue's clock minus ours
        self.is_down = False
        self.history_lag_s = 0.0
        self.hedge_mode = False                      # both-side positions: positionIdx 1 (Buy side) / 2 (Sell side)
        self._finished: dict[str, float] = {}       # orderId -> when it reached a closed status
        self._recent_closed: list[str] = []         # realtime's cache of closed orders, oldest first, <= 500
        self._lock = threading.RLock()
        self._conns: set[socket.socket] = set()

    # --- server plumbing: raw query strings, dropped connections, down/up --------------------------
    def __enter__(self) -> "FakeBybit":
        super().__enter__()
        outer = self
        base = self._httpd.RequestHandlerClass

        class Handler(base):  # type: ignore[misc, valid-type]
            def setup(self) -> None:
                super().setup()
                outer._conns.add(self.connection)

            def finish(self) -> None:
                outer._conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def _serve(self) -> None:
                _tl.raw_path, _tl.conn = self.path, self.connection
                try:
                    super()._serve()
                except OSError:        # we dropped the connection on purpose ("lost" fault)
                    self.close_connection = True

            do_GET = do_POST = _serve

        self._handler = Handler
        self._httpd.RequestHandlerClass = Handler
        self._port = self._httpd.server_address[1]
        return self

    def down(self) -> None:
        """Refuse connections: stop listening and close every open connection."""
        self.is_down = True
        self._httpd.shutdown()
        self._httpd.server_close()
        for c in list(self._conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def up(self) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()
        self.is_down = False

    def __exit__(self, *exc: Any) -> None:
        if not self.is_down:
            super().__exit__(*exc)

    # --- test controls -----------------------------------------------------------------------------
    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms

    def fail_next(self, kind: str, path: str | None = None, **kw: Any) -> None:
        self.faults.append(Fault(kind, path or "/v5/order/create", kw))

    def set_price(self, symbol: str, price: float) -> None:
        with self._lock:
            self.prices[symbol] = price
            for o in list(self.orders.values()):
                if o["symbol"] != symbol or o["orderStatus"] != "Untriggered":
                    continue
                trig = float(o["triggerPrice"])
                if (o["triggerDirection"] == 1 and price >= trig) or (o["triggerDirection"] == 2 and price <= trig):
                    o["orderStatus"] = "Triggered"
                    self._execute(o, price)
            self._check_liquidation(symbol, price)
            self._sweep()

    def restart(self) -> None:
        """A Bybit service restart: realtime forgets closed orders (history still has them)."""
        with self._lock:
            self._recent_closed.clear()

    def _sweep(self) -> None:
        """Stamp orders that have just closed: realtime's recent-closed cache and history's lag start now."""
        for oid, o in self.orders.items():
            if o["orderStatus"] not in OPEN_STATES and oid not in self._finished:
                self._finished[oid] = time.time()
                self._recent_closed = (self._recent_closed + [oid])[-500:]

    def settle_funding(self, symbol: str, rate: float, ts_ms: int | None = None) -> float:
        """Funding at ``rate`` on the position's notional at the current price; returns what we paid."""
        with self._lock:
            p = self.positions.get(symbol)
            if not p or p.size <= 0:
                return 0.0
            paid = p.size * self.prices[symbol] * rate * (1 if p.side == "Buy" else -1)
            self.wallet -= paid
            ts = self.now_ms() if ts_ms is None else ts_ms
            self.txlog.append({"id": uuid.uuid4().hex, "symbol": symbol, "category": "linear", "side": p.side,
                               "transactionTime": str(ts), "type": "SETTLEMENT", "currency": "USDT",
                               "qty": _d(p.size), "size": _d(p.size), "tradePrice": _d(self.prices[symbol]),
                               "funding": _d(-paid), "fee": "0", "cashFlow": "0", "change": _d(-paid),
                               "cashBalance": _d(self.wallet)})
            return paid

    def order_by_link(self, link: str) -> dict | None:
        found = [o for o in self.orders.values() if o["orderLinkId"] == link]
        return found[-1] if found else None

    # --- routing -----------------------------------------------------------------------------------
    def _route(self, req: Request) -> Response:
        if req.method == "POST" and req.path == "/v5/order/create":
            try:
                self.post_counts[json.loads(req.body or b"{}").get("orderLinkId", "")] += 1
            except ValueError:
                pass
        fault = None
        with self._lock:
            for f in self.faults:
                if f.path == req.path:
                    fault = f
                    self.faults.remove(f)
                    break
        if fault and fault.kind == "latency":
            time.sleep(fault.kw.get("s", 0.3))
        if fault and fault.kind == "5xx":
            return 502, {}, "<html>502 Bad Gateway</html>"
        if fault and fault.kind == "malformed":
            return 200, {"Content-Type": "application/json"}, b'{"retCode": 0, "result": {'
        if fault and fault.kind == "403":
            return 403, {}, "access too frequent"
        public = req.path.startswith("/v5/market/")
        if not public:
            bad = self._check_auth(req)
            if bad:
                return 200, {}, bad
        if fault and fault.kind == "rate_limit":
            reset = self.now_ms() + int(fault.kw.get("reset_ms", 1500))
            return 200, {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0",
                         "X-Bapi-Limit-Reset-Timestamp": str(reset)}, _err(fault.kw.get("code", 10006),
                                                                           fault.kw.get("msg", "Too many visits!"))
        if fault and fault.kind == "10002":
            return 200, {}, _err(10002, "invalid request, please check your server timestamp or recv_window param")
        if fault and fault.kind == "reject":
            return 200, {}, _err(fault.kw["code"], fault.kw.get("msg", "rejected"))
        params = req.json() if req.method == "POST" else dict(req.query)
        with self._lock:
            _tl.partial = fault.kw.get("ratio", 0.5) if fault and fault.kind == "partial" else None
            body = self._dispatch(req.method, req.path, params)
            self._sweep()
        if fault and fault.kind == "timeout":
            time.sleep(fault.kw.get("s", 1.0))
        if fault and fault.kind == "lost":
            try:
                _tl.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return 200, {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "9",
                     "X-Bapi-Limit-Reset-Timestamp": str(self.now_ms() + 1000)}, body

    def _check_auth(self, req: Request) -> dict | None:
        h = {k.lower(): v for k, v in req.headers.items()}
        key, ts, rw, sign = (h.get("x-bapi-api-key"), h.get("x-bapi-timestamp"), h.get("x-bapi-recv-window"),
                             h.get("x-bapi-sign"))
        if not key or key not in self.keys:
            return _err(10003, "API key is invalid.")
        if not (ts and sign):
            return _err(10004, "error sign! missing headers")
        rw = rw or "5000"
        raw = getattr(_tl, "raw_path", "")
        payload = (raw.split("?", 1)[1] if "?" in raw else "") if req.method == "GET" else req.body.decode()
        want = hmac.new(self.keys[key].encode(), (ts + key + rw + payload).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, sign):
            return _err(10004, f"error sign! origin_string[{ts}{key}{rw}{payload}]")   # as Bybit does
        now = self.now_ms()
        if not (now - int(rw) <= int(ts) < now + 1000):
            return _err(10002, f"invalid request, please check your server timestamp or recv_window param. "
                               f"req_timestamp[{ts}],server_timestamp[{now}],recv_window[{rw}]")
        return None

    def _dispatch(self, method: str, path: str, p: dict) -> dict:
        routes = {
            ("GET", "/v5/market/time"): self._time,
            ("GET", "/v5/market/instruments-info"): self._instruments,
            ("POST", "/v5/order/create"): self._create,
            ("POST", "/v5/order/cancel"): self._cancel,
            ("GET", "/v5/order/realtime"): lambda p: self._query_orders(p, realtime=True),
            ("GET", "/v5/order/history"): lambda p: self._query_orders(p, realtime=False),
            ("GET", "/v5/execution/list"): self._executions,
            ("GET", "/v5/position/list"): self._positions,
            ("POST", "/v5/position/switch-isolated"): self._switch_isolated,
            ("POST", "/v5/position/set-leverage"): self._set_leverage,
            ("POST", "/v5/account/set-margin-mode"): self._set_margin_mode,
            ("GET", "/v5/account/info"): self._account_info,
            ("GET", "/v5/account/wallet-balance"): self._wallet_balance,
            ("GET", "/v5/account/transaction-log"): self._transaction_log,
        }
        fn = routes.get((method, path))
        if fn is None:
            return _err(10017, "route not found")
        if path != "/v5/market/time" and p.get("category", "linear") != "linear":
            return _err(10001, "category only support linear")
        return fn(p)

    # --- public ------------------------------------------------------------------------------------
    def _time(self, p: dict) -> dict:
        now = self.now_ms()
        return _ok({"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)})

    def _instruments(self, p: dict) -> dict:
        rows = []
        for sym, i in self.instruments.items():
            if p.get("symbol") and p["symbol"] != sym:
                continue
            rows.append({"symbol": sym, "contractType": "LinearPerpetual", "status": "Trading",
                         "baseCoin": sym[:-4], "quoteCoin": "USDT", "settleCoin": "USDT",
                         "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": i["tickSize"]},
                         "lotSizeFilter": {"maxOrderQty": "1190", "minOrderQty": i["minOrderQty"],
                                           "qtyStep": i["qtyStep"], "maxMktOrderQty": "500",
                                           "minNotionalValue": i["minNotionalValue"]},
                         "leverageFilter": {"minLeverage": "1", "maxLeverage": "100", "leverageStep": "0.01"}})
        return _ok({"category": "linear", "list": rows, "nextPageCursor": ""})

    # --- orders ------------------------------------------------------------------------------------
    def _available(self) -> float:
        return self.wallet - sum(p.im for p in self.positions.values())

    def _create(self, p: dict) -> dict:
        sym, link = p.get("symbol"), p.get("orderLinkId", "")
        if sym not in self.instruments:
            return _err(10001, "params error: symbol invalid")
        if p.get("side") not in ("Buy", "Sell") or p.get("orderType") != "Market":
            return _err(10001, "params error: side / orderType")
        if int(p.get("positionIdx", 0)) not in ((1, 2) if self.hedge_mode else (0,)):
            return _err(10001, "position idx not match position mode")
        if link and any(o["orderLinkId"] == link for o in self.orders.values()):
            return _err(110072, "OrderLinkedID is duplicate")   # live or finished: stricter than live-only
        inst = self.instruments[sym]
        if not isinstance(p.get("qty"), str):
            return _err(10001, "params error: qty must be a string")
        qty = Decimal(p["qty"])
        if qty % Decimal(inst["qtyStep"]) != 0:
            return _err(10001, "Qty invalid: too many decimals")
        if qty < Decimal(inst["minOrderQty"]):
            return _err(10001, "The number of contracts exceeds minimum limit allowed")
        price = self.prices[sym]
        trig = p.get("triggerPrice")
        if trig is not None and Decimal(trig) % Decimal(inst["tickSize"]) != 0:
            return _err(10001, "Trigger price invalid: too many decimals")
        reduce = bool(p.get("reduceOnly"))
        pos = self.positions.get(sym) or Pos()
        if not reduce and trig is None:
            if float(qty) * price < float(inst["minNotionalValue"]):
                return _err(110094, "Order does not meet minimum order value 5USDT")
            lev = self.leverage.get(sym, 10)
            closing = min(float(qty), pos.size) if pos.side and pos.side != p["side"] else 0.0
            need = (float(qty) - closing) * price / lev + float(qty) * price * TAKER_FEE
            if need > self._available():
                return _err(110007, "ab not enough for new order")
        if reduce and trig is None and (not pos.side or pos.side == p["side"]):
            return _err(110017, "current position is zero, cannot fix reduce-only order qty")
        direction = int(p.get("triggerDirection") or 0)
        if trig is not None:
            t = float(trig)
            if direction == 1 and t <= price:
                return _err(110092, f"expect Rising, but trigger_price[{trig}] <= current[{price}]")
            if direction == 2 and t >= price:
                return _err(110093, f"expect Falling, but trigger_price[{trig}] >= current[{price}]")
            if direction not in (1, 2):
                return _err(10001, "triggerDirection is required for a conditional order")
        now = str(self.now_ms())
        o = {"orderId": str(uuid.uuid4()), "orderLinkId": link, "symbol": sym, "side": p["side"],
             "orderType": "Market", "qty": p["qty"], "price": "0", "cumExecQty": "0", "cumExecValue": "0",
             "cumExecFee": "0", "avgPrice": "", "orderStatus": "New", "reduceOnly": reduce, "positionIdx": 0,
             "triggerPrice": trig or "", "triggerDirection": direction, "triggerBy": p.get("triggerBy", ""),
             "stopOrderType": "Stop" if trig else "", "timeInForce": "IOC", "rejectReason": "EC_NoError",
             "cancelType": "UNKNOWN", "createdTime": now, "updatedTime": now, "category": "linear"}
        self.orders[o["orderId"]] = o
        if trig is not None:
            o["orderStatus"] = "Untriggered"
        else:
            self._execute(o, price, ratio=getattr(_tl, "partial", None))
        return _ok({"orderId": o["orderId"], "orderLinkId": link})

    def _execute(self, o: dict, price: float, ratio: float | None = None, exec_type: str = "Trade") -> None:
        sym = o["symbol"]
        pos = self.positions.setdefault(sym, Pos())
        qty = float(o["qty"])
        step = float(self.instruments[sym]["qtyStep"])
        if o["reduceOnly"]:
            if not pos.side or pos.side == o["side"]:
                o.update(orderStatus="Deactivated" if o["triggerPrice"] else "Cancelled",
                         rejectReason="EC_ReduceOnlySetButNotReducing", updatedTime=str(self.now_ms()))
                return
            qty = min(qty, pos.size)
        if ratio is not None:
            qty = round(int(qty * ratio / step) * step, 10)
        rate = MAKER_FEE if exec_type == "AdlTrade" else TAKER_FEE
        fee = qty * price * rate
        pnl = 0.0
        lev = self.leverage.get(sym, 10)
        if not pos.side or pos.side == o["side"]:
            new = pos.size + qty
            pos.avg = (pos.avg * pos.size + price * qty) / new
            pos.im += qty * price / lev
            pos.size, pos.side = new, o["side"]
        else:
            close = min(qty, pos.size)
            sign = 1 if pos.side == "Buy" else -1
            pnl = (price - pos.avg) * close * sign
            pos.im -= pos.im * close / pos.size
            pos.size = round(pos.size - close, 10)
            rest = round(qty - close, 10)
            if pos.size <= 0:
                pos.size, pos.side, pos.avg, pos.im = 0.0, "", 0.0, 0.0
            if rest > 0:
                pos.side, pos.size, pos.avg, pos.im = o["side"], rest, price, rest * price / lev
        self.wallet += pnl - fee
        now = str(self.now_ms())
        self.executions.append({"symbol": sym, "orderId": o["orderId"], "orderLinkId": o["orderLinkId"],
                                "side": o["side"], "orderType": "Market", "execId": str(uuid.uuid4()),
                                "execPrice": _d(price), "execQty": _d(qty), "execValue": _d(qty * price),
                                "execFee": _d(fee), "feeRate": _d(rate), "execType": exec_type,
                                "execTime": now, "isMaker": False, "execPnl": _d(pnl), "closedSize": "0"})
        filled = qty
        o.update(cumExecQty=_d(filled), cumExecValue=_d(filled * price), cumExecFee=_d(fee), avgPrice=_d(price),
                 updatedTime=now,
                 orderStatus="Filled" if filled >= float(o["qty"]) - 1e-12 else "PartiallyFilledCanceled")
        if not pos.side:                       # flat: reduce-only orders left on the symbol are deactivated
            for other in self.orders.values():
                if other["symbol"] == sym and other["orderStatus"] == "Untriggered" and other["reduceOnly"]:
                    other.update(orderStatus="Deactivated", updatedTime=now)

    def _liq_price(self, sym: str) -> float:
        p = self.positions.get(sym)
        if not p or not p.side:
            return 0.0
        lev = self.leverage.get(sym, 10)
        return p.avg * (1 - 1 / lev + MMR) if p.side == "Buy" else p.avg * (1 + 1 / lev - MMR)

    def _check_liquidation(self, sym: str, price: float) -> None:
        p = self.positions.get(sym)
        if not p or not p.side:
            return
        liq = self._liq_price(sym)
        if (p.side == "Buy" and price <= liq) or (p.side == "Sell" and price >= liq):
            o = {"orderId": str(uuid.uuid4()), "orderLinkId": "", "symbol": sym,
                 "side": "Sell" if p.side == "Buy" else "Buy", "orderType": "Market", "qty": _d(p.size),
                 "reduceOnly": True, "triggerPrice": "", "triggerDirection": 0, "orderStatus": "New",
                 "rejectReason": "EC_NoError", "cancelType": "UNKNOWN", "positionIdx": 0,
                 "createdTime": str(self.now_ms()), "updatedTime": str(self.now_ms()), "stopOrderType": ""}
            self.orders[o["orderId"]] = o
            margin = p.im
            self._execute(o, liq, exec_type="BustTrade")
            # isolated: the whole position margin is lost (the trade's own P&L is replaced by -margin)
            last = self.executions[-1]
            self.wallet += -margin - float(last["execPnl"])
            last["execPnl"] = _d(-margin)

    def adl(self, symbol: str, qty: float, price: float) -> None:
        """Auto-deleveraging: the venue closes ``qty`` of the position at ``price`` (a liquidated counterparty's
        bankruptcy price) under an order of its own (execType AdlTrade, no orderLinkId), charging the maker fee;
        the trader's active orders are cancelled first ("have all of their active orders closed")."""
        with self._lock:
            p = self.positions[symbol]
            now = str(self.now_ms())
            for other in self.orders.values():
                if other["orderStatus"] in OPEN_STATES:
                    other.update(orderStatus="Deactivated" if other["triggerPrice"] else "Cancelled",
                                 cancelType="CancelAllBeforeAdl", updatedTime=now)
            o = {"orderId": str(uuid.uuid4()), "orderLinkId": "", "symbol": symbol,
                 "side": "Sell" if p.side == "Buy" else "Buy", "orderType": "Market", "qty": _d(qty),
                 "reduceOnly": True, "triggerPrice": "", "triggerDirection": 0, "orderStatus": "New",
                 "rejectReason": "EC_NoError", "cancelType": "UNKNOWN", "positionIdx": 0,
                 "createdTime": now, "updatedTime": now, "stopOrderType": ""}
            self.orders[o["orderId"]] = o
            self._execute(o, price, exec_type="AdlTrade")
            self._sweep()

    def deliver(self, symbol: str, price: float) -> None:
        """A delisting: Bybit closes the position itself at ``price`` (execType ``Delivery``, "Position closed by
        contract delisted"; createType ``CreateBySettle``, "recorded as a trade but not an order", so no order
        row), taker fee; resting orders of the symbol are cancelled (cancelType ``CancelBySettle``)."""
        with self._lock:
            p, now = self.positions[symbol], str(self.now_ms())
            for o in self.orders.values():
                if o["symbol"] == symbol and o["orderStatus"] in OPEN_STATES:
                    o.update(orderStatus="Deactivated" if o["triggerPrice"] else "Cancelled",
                             cancelType="CancelBySettle", updatedTime=now)
            pnl = (price - p.avg) * p.size * (1 if p.side == "Buy" else -1)
            fee = p.size * price * TAKER_FEE
            self.wallet += pnl - fee
            self.executions.append({"symbol": symbol, "orderId": str(uuid.uuid4()), "orderLinkId": "",
                                    "side": "Sell" if p.side == "Buy" else "Buy", "orderType": "Market",
                                    "execId": str(uuid.uuid4()), "execPrice": _d(price), "execQty": _d(p.size),
                                    "execValue": _d(p.size * price), "execFee": _d(fee), "feeRate": _d(TAKER_FEE),
                                    "execType": "Delivery", "createType": "CreateBySettle", "execTime": now,
                                    "isMaker": False, "execPnl": _d(pnl), "closedSize": _d(p.size)})
            p.side, p.size, p.avg, p.im = "", 0.0, 0.0, 0.0
            self._sweep()

    def _cancel(self, p: dict) -> dict:
        o = self.order_by_link(p.get("orderLinkId", "")) if p.get("orderLinkId") else self.orders.get(
            p.get("orderId", ""))
        if o is None or o["orderStatus"] not in OPEN_STATES:
            return _err(110001, "order not exists or too late to cancel")
        o.update(orderStatus="Deactivated" if o["triggerPrice"] else "Cancelled", cancelType="CancelByUser",
                 updatedTime=str(self.now_ms()))
        return _ok({"orderId": o["orderId"], "orderLinkId": o["orderLinkId"]})

    def _query_orders(self, p: dict, realtime: bool) -> dict:
        span = (0, 2 ** 62) if realtime else self._span(p)
        if span is None:
            return _err(10001, "The time range between startTime and endTime cannot exceed 7 days")
        rows = []
        by_id = bool(p.get("orderId") or p.get("orderLinkId"))
        closed_only = str(p.get("openOnly", "0")) == ("1" if self.unified else "2")
        settled = time.time() - self.history_lag_s
        for oid, o in reversed(list(self.orders.items())):
            is_open = o["orderStatus"] in OPEN_STATES
            if realtime:
                recent = oid in self._recent_closed
                if not ((is_open or recent) if by_id else (recent if closed_only else is_open)):
                    continue
            elif is_open or self._finished.get(oid, 0.0) > settled or (
                    not float(o.get("cumExecQty") or 0) and int(o["updatedTime"]) < self.now_ms() - 86_400_000):
                continue        # ended with no fill (Cancelled, Rejected, Deactivated): kept "in the last 24 hours"
            if p.get("symbol") and o["symbol"] != p["symbol"]:
                continue
            if p.get("orderLinkId") and o["orderLinkId"] != p["orderLinkId"]:
                continue
            if p.get("orderId") and o["orderId"] != p["orderId"]:
                continue
            if not span[0] <= int(o["createdTime"]) <= span[1]:
                continue
            rows.append(dict(o))
        return self._page(rows, p, 50)

    @staticmethod
    def _page(rows: list[dict], p: dict, default_limit: int) -> dict:
        start = int(p.get("cursor") or 0)
        limit = int(p.get("limit") or default_limit)
        chunk = rows[start:start + limit]
        nxt = str(start + limit) if start + limit < len(rows) else ""
        return _ok({"category": "linear", "list": chunk, "nextPageCursor": nxt})

    def _span(self, p: dict) -> tuple[int, int] | None:
        """(start, end) ms a history query covers (v5 "Get Trade History", "Get Order History"): at most 7 days;
        none given: "return 7 days by default"; only one given: the 7 days after the start / before the end.
        None when the range given is longer than 7 days (refused)."""
        week = 7 * 24 * 3600 * 1000
        start, end = p.get("startTime"), p.get("endTime")
        if start and end:
            return (int(start), int(end)) if int(end) - int(start) <= week else None
        if start:
            return int(start), int(start) + week
        end = int(end) if end else self.now_ms()
        return end - week, end

    def _executions(self, p: dict) -> dict:
        # "orderId and orderLinkId have a higher priority and as long as these two parameters are in the input
        # parameters, other input parameters will be ignored": the times too. The doc does not exempt such a query
        # from the 7-day default: not exempted
        if p.get("orderId") or p.get("orderLinkId"):
            p = {k: v for k, v in p.items() if k not in ("startTime", "endTime")}
        span = self._span(p)
        if span is None:
            return _err(10001, "The time range between startTime and endTime cannot exceed 7 days")
        start, end = span
        rows = [e for e in reversed(self.executions)
                if (not p.get("symbol") or e["symbol"] == p["symbol"])
                and (not p.get("orderId") or e["orderId"] == p["orderId"])
                and (not p.get("orderLinkId") or e["orderLinkId"] == p["orderLinkId"])
                and (not p.get("execType") or e["execType"] == p["execType"])
                and int(start) <= int(e["execTime"]) <= int(end)]
        return self._page(rows, p, 50)

    # --- positions and account ---------------------------------------------------------------------
    def _positions(self, p: dict) -> dict:
        rows = []
        for sym, pos in self.positions.items():
            if p.get("symbol") and sym != p["symbol"]:
                continue
            mark = self.prices[sym]
            sign = 1 if pos.side == "Buy" else -1
            rows.append({"symbol": sym, "side": pos.side, "size": _d(pos.size), "avgPrice": _d(pos.avg),
                         "positionIdx": 0, "tradeMode": 1 if sym in self.isolated else 0,
                         "leverage": str(self.leverage.get(sym, 10)), "markPrice": _d(mark),
                         "liqPrice": _d(self._liq_price(sym)) if pos.side else "",
                         "positionIM": _d(pos.im), "positionBalance": _d(pos.im),
                         "positionValue": _d(pos.size * pos.avg),
                         "unrealisedPnl": _d((mark - pos.avg) * pos.size * sign) if pos.side else "0",
                         "positionStatus": "Normal", "updatedTime": str(self.now_ms())})
        return self._page(rows, p, 20)

    def _switch_isolated(self, p: dict) -> dict:
        if self.unified:
            return _err(100028, "unified account is forbidden")
        sym = p["symbol"]
        if int(p.get("tradeMode", 0)) == 1 and sym in self.isolated:
            return _err(110026, "Cross/isolated margin mode is not modified")
        self.isolated.add(sym)
        self.leverage[sym] = int(float(p.get("buyLeverage", 10)))
        return _ok({})

    def _set_margin_mode(self, p: dict) -> dict:
        if not self.unified:
            return _err(10008, "account mode not supported")
        self.margin_mode_sets += 1
        self.margin_mode = p.get("setMarginMode", "")
        if self.margin_mode == "ISOLATED_MARGIN":
            self.isolated.update(self.instruments)
        return _ok({"reasons": []})

    def _account_info(self, p: dict) -> dict:
        return _ok({"unifiedMarginStatus": 5 if self.unified else 1, "marginMode": self.margin_mode,
                    "isMasterTrader": False, "spotHedgingStatus": "OFF", "updatedTime": str(self.now_ms())})

    def _set_leverage(self, p: dict) -> dict:
        sym, lev = p["symbol"], int(float(p["buyLeverage"]))
        if p.get("buyLeverage") != p.get("sellLeverage"):
            return _err(10001, "buy leverage must equal sell leverage in one-way mode")
        if self.leverage.get(sym) == lev:
            return _err(110043, "Set leverage not modified")
        self.leverage[sym] = lev
        return _ok({})

    def _wallet_balance(self, p: dict) -> dict:
        # a classic account has no UNIFIED wallet (Bybit's doc: classic accounts take CONTRACT or SPOT)
        if p.get("accountType") not in (("UNIFIED", "CONTRACT") if self.unified else ("CONTRACT", "SPOT")):
            return _err(10001, "accountType invalid")
        upl = sum((self.prices[s] - q.avg) * q.size * (1 if q.side == "Buy" else -1)
                  for s, q in self.positions.items() if q.side)
        im = sum(q.im for q in self.positions.values())
        coin = {"coin": "USDT", "walletBalance": _d(self.wallet), "equity": _d(self.wallet + upl),
                "unrealisedPnl": _d(upl), "totalPositionIM": _d(im), "totalOrderIM": "0",
                "availableToWithdraw": "", "usdValue": _d(self.wallet + upl)}
        return _ok({"list": [{"accountType": p["accountType"], "totalEquity": _d(self.wallet + upl),
                              "totalWalletBalance": _d(self.wallet),
                              "totalAvailableBalance": _d(self._available()), "coin": [coin]}]})

    def _transaction_log(self, p: dict) -> dict:
        if not self.unified:        # Bybit's doc: "Query for transaction logs in your Unified account"
            return _err(10001, "accountType only support UNIFIED")
        start, end = int(p.get("startTime", 0)), int(p.get("endTime", 2**62))
        if end - start > 7 * 86400 * 1000:
            return _err(10001, "The time range between startTime and endTime cannot exceed 7 days")
        rows = [t for t in reversed(self.txlog)
                if start <= int(t["transactionTime"]) <= end and (not p.get("type") or t["type"] == p["type"])
                and (not p.get("currency") or t["currency"] == p["currency"])]
        return self._page(rows, p, 20)
