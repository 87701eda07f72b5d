"""Fake Alpaca trading API (crypto spot, /v2), for the real alpaca-py ``TradingClient`` over real HTTP.

Endpoints: ``GET /v2/account``, ``GET /v2/assets/{BTCUSD | BTC/USD | BTC%2FUSD}``, ``POST /v2/orders``,
``GET /v2/orders`` (status=open|closed|all, symbols=...), ``GET /v2/orders/{id}``,
``GET /v2/orders:by_client_order_id?client_order_id=..``, ``DELETE /v2/orders/{id}``,
``GET /v2/positions``, ``GET /v2/clock``. Response shapes follow Alpaca's (alpaca-py's models parse them).

Behaviour, as Alpaca's:

* Auth by the ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers; a wrong pair -> 401
  ``{"code": 40110000, "message": "request is not authorized"}``.
* ``client_order_id`` unique per account, for good: a second POST with it, even after the first order was
  filled or canceled (alpaca-py issue #260), -> 422 ``{"code": 40010001, "message": "client_order_id must be
  unique"}``. ``post_counts[cid]`` counts every
  POST /v2/orders per client id (faulted ones too).
* Crypto: types market / limit / stop_limit, time_in_force gtc / ioc (else 422); qty on the
  ``min_trade_increment`` grid and >= ``min_order_size`` (else 422); a USD-quoted order under $10 ->
  403 40310000 "cost basis must be >= minimal amount of order 10"; buying more than the cash or
  selling more than held and not held by open sell orders -> 403 40310000 "insufficient balance for USD|BTC
  (requested: .., available: ..)". Positions report that as ``qty_available`` ("available minus open orders";
  ``send_qty_available=False`` omits the field).
* MARKET orders fill at once at ``set_price(symbol, price)`` (with ``async_fills=True`` the POST
  answers ``pending_new``, as Alpaca usually does, and the fill shows on the next read); the taker fee (``fee_rate``, 25 bps) is
  taken from what is received: a buy credits ``qty * (1 - fee)`` coins, a sell ``qty * price * (1 - fee)``
  USD. ``fees[cid]`` holds each order's fee in USD for the tests. limit / stop_limit orders rest (status new).
* Positions are reported with Alpaca's legacy symbol (``BTCUSD``).

Faults: ``inject(endpoint, fault, times=1, **opts)``; ``endpoint`` is ``"POST /v2/orders"``,
``"GET /v2/orders:by_client_order_id"``, ``"GET /v2/assets/{symbol}"``, ``"DELETE /v2/orders/{id}"``,
... or ``"*"``. Faults: ``latency`` (``delay_s``, then normal), ``timeout`` (handles the request, then
sleeps ``delay_s`` before answering: the client gives up but the order *is* booked), ``500`` / ``502``
/ ``503`` / ``504`` (nothing handled), ``429`` (``retry_after`` seconds header, or None to omit it;
``reset_in_s`` for X-RateLimit-Reset), ``forbidden`` (403 ``{"message": "forbidden"}``), ``partial``
(POST: fills ``fraction`` of a market order; time_in_force ioc cancels the rest -- status canceled with the
partial filled_qty -- while gtc leaves it resting, partially_filled), ``lost`` (handled, then
the connection is closed without an answer), ``lost_504`` (handled, then 504), ``garbled``
(handled, then a 200 whose JSON is cut off), ``stale`` (an order read answered as the order was when
accepted, unfilled, while positions already show its fill), ``drop`` (connection
closed, nothing handled). ``down()`` closes the port (and the open connections): connection refused
until ``up()``.
"""
from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from fakes.server import FakeServer, Request, Response

ET = timezone(timedelta(hours=-5))       # the clock answers in New York time, as Alpaca's does

ASSETS = {
    "BTC/USD": {"min_order_size": "0.0001", "min_trade_increment": "0.0001", "price_increment": "1"},
    "ETH/USD": {"min_order_size": "0.001", "min_trade_increment": "0.001", "price_increment": "0.1"},
    "DOGE/USD": {"min_order_size": "1", "min_trade_increment": "1", "price_increment": "0.00001"},
}
OPEN = {"new", "accepted", "pending_new", "partially_filled", "pending_cancel", "held"}


class _Drop(BaseException):
    """Raised by the route to close the connection without answering (BaseException: FakeServer's
    ``except Exception`` must not turn it into a 599)."""


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _num(d: Decimal) -> str:
    s = format(d.normalize(), "f")
    return "0" if s in ("-0", "") else s


def _canon(sym: str) -> str:
    s = unquote(sym).upper()
    if "/" in s:
        return s
    for q in ("USDT", "USDC", "USD", "BTC"):
        if s.endswith(q) and len(s) > len(q):
            return f"{s[:-len(q)]}/{q}"
    return s


@dataclass
class _Fault:
    endpoint: str
    fault: str
    times: int
    opts: dict = field(default_factory=dict)


class FakeAlpacaTrading(FakeServer):
    def __init__(self, keys: tuple[str, str] = ("key-id", "secret-key"), cash: float = 10_000.0,
                 fee_rate: float = 0.0025, clock_skew_s: float = 0.0, async_fills: bool = False):
        super().__init__(self._route)
        self.keys = keys
        self.cash = Decimal(str(cash))
        self.fee_rate = Decimal(str(fee_rate))
        self.clock_skew_s = clock_skew_s
        self.async_fills = async_fills             # the POST answers pending_new; the fill shows on reads
        self.send_qty_available = True
        self.prices: dict[str, Decimal] = {}
        self.orders: dict[str, dict] = {}          # by venue id, in submission order
        self.by_cid: dict[str, str] = {}
        self.holdings: dict[str, Decimal] = {}     # coins held per pair, e.g. "BTC/USD"
        self.cost: dict[str, Decimal] = {}         # USD cost basis of the holdings
        self.fees: dict[str, float] = {}
        self.post_counts: Counter[str] = Counter()
        self.post_bodies: list[dict] = []
        self.faults: list[_Fault] = []
        self.account_id = str(uuid.uuid4())
        self.asset_ids = {s: str(uuid.uuid5(uuid.NAMESPACE_DNS, s)) for s in ASSETS}
        self._lock = threading.RLock()
        self._conns: set[socket.socket] = set()
        self._down = False

    # --- server plumbing: DELETE, dropped connections, down/up ------------------------------------
    def __enter__(self) -> "FakeAlpacaTrading":
        super().__enter__()
        handler = self._httpd.RequestHandlerClass
        serve, outer = handler._serve, self

        def do(h: Any) -> None:
            try:
                serve(h)
            except _Drop:
                h.close_connection = True          # nothing written: the client sees the socket close

        orig_setup, orig_finish = handler.setup, handler.finish

        def setup(h: Any) -> None:
            orig_setup(h)
            with outer._lock:
                outer._conns.add(h.connection)

        def finish(h: Any) -> None:
            with outer._lock:
                outer._conns.discard(h.connection)
            try:
                orig_finish(h)
            except OSError:
                pass

        handler.do_GET = handler.do_POST = handler.do_DELETE = do
        handler.setup, handler.finish = setup, finish
        self._handler = handler
        self._httpd.handle_error = lambda *a: None   # a client that gave up (timeout fault): no noise
        self._addr = self._httpd.server_address[:2]
        return self

    def down(self) -> None:
        """Close the listening port and every open connection: the next request is refused."""
        if self._down:
            return
        self._down = True
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def up(self) -> None:
        if not self._down:
            return
        self._httpd = ThreadingHTTPServer(self._addr, self._handler)
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda *a: None
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()
        self._down = False

    @property
    def url(self) -> str:
        host, port = self._addr
        return f"http://{host}:{port}"

    # --- test controls ---------------------------------------------------------------------------
    def set_price(self, symbol: str, price: float) -> None:
        self.prices[_canon(symbol)] = Decimal(str(price))

    def inject(self, endpoint: str, fault: str, times: int = 1, **opts: Any) -> None:
        with self._lock:
            self.faults.append(_Fault(endpoint, fault, times, opts))

    def order(self, client_order_id: str) -> dict | None:
        oid = self.by_cid.get(client_order_id)
        return self.orders.get(oid) if oid else None

    def orders_for(self, client_order_id: str) -> list[dict]:
        return [o for o in self.orders.values() if o["client_order_id"] == client_order_id]

    def holding(self, symbol: str) -> float:
        return float(self.holdings.get(_canon(symbol), Decimal(0)))

    # --- routing ---------------------------------------------------------------------------------
    @staticmethod
    def _endpoint(req: Request) -> str:
        p = req.path
        if p.startswith("/v2/assets/"):
            return f"{req.method} /v2/assets/{{symbol}}"
        if p.startswith("/v2/orders/"):
            return f"{req.method} /v2/orders/{{id}}"
        return f"{req.method} {p}"

    def _take_fault(self, endpoint: str) -> _Fault | None:
        with self._lock:
            for f in self.faults:
                if f.times > 0 and f.endpoint in (endpoint, "*"):
                    f.times -= 1
                    return f
        return None

    def _route(self, req: Request) -> Response:
        ep = self._endpoint(req)
        if ep == "POST /v2/orders":
            try:
                cid = str(req.json().get("client_order_id") or "")
            except ValueError:
                cid = ""
            with self._lock:
                self.post_counts[cid] += 1
        f = self._take_fault(ep)
        kind = f.fault if f else None
        opts = f.opts if f else {}
        if kind == "latency":
            time.sleep(opts.get("delay_s", 0.1))
        elif kind == "drop":
            raise _Drop()
        elif kind in ("500", "502", "503", "504"):
            return int(kind), {}, {"message": "internal server error"} if kind == "500" else \
                "<html><body>Gateway error</body></html>"
        elif kind == "forbidden":                      # a key without the permission
            return 403, {}, {"message": "forbidden"}
        elif kind == "429":
            h = {"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "0"}
            if opts.get("retry_after", "7") is not None:
                h["Retry-After"] = str(opts.get("retry_after", "7"))
            if opts.get("reset_in_s") is not None:
                h["X-RateLimit-Reset"] = str(int(time.time() + opts["reset_in_s"]))
            return 429, h, {"code": 42910000, "message": "rate limit exceeded"}

        if (req.headers.get("APCA-API-KEY-ID"), req.headers.get("APCA-API-SECRET-KEY")) != self.keys:
            resp: Response = (401, {}, {"code": 40110000, "message": "request is not authorized"})
        else:
            with self._lock:
                resp = self._handle(req, ep, opts if kind == "partial" else None)

        if kind == "timeout":
            time.sleep(opts.get("delay_s", 1.0))
        elif kind == "lost":
            raise _Drop()
        elif kind == "lost_504":
            return 504, {}, "<html><body>504 Gateway Time-out</body></html>"
        elif kind == "garbled":
            return 200, {"Content-Type": "application/json"}, b'{"id": "'  # cut off by a proxy
        elif kind == "stale" and resp[0] == 200 and isinstance(resp[2], dict):
            # a read that lags the book: the order as accepted, before its fill (positions already show it)
            return 200, {}, dict(resp[2], status="accepted", filled_qty="0", filled_avg_price=None, filled_at=None)
        return resp

    def _handle(self, req: Request, ep: str, partial: dict | None) -> Response:
        if ep == "GET /v2/account":
            return 200, {}, self._account()
        if ep == "GET /v2/clock":
            now = datetime.now(timezone.utc) + timedelta(seconds=self.clock_skew_s)
            return 200, {}, {"timestamp": now.astimezone(ET).isoformat(), "is_open": True,
                             "next_open": (now + timedelta(days=1)).astimezone(ET).isoformat(),
                             "next_close": (now + timedelta(hours=6)).astimezone(ET).isoformat()}
        if ep == "GET /v2/assets/{symbol}":
            sym = _canon(req.path[len("/v2/assets/"):])
            if sym not in ASSETS:
                return 404, {}, {"code": 40410000, "message": "asset not found"}
            return 200, {}, self._asset(sym)
        if ep == "GET /v2/positions":
            return 200, {}, [self._position(s) for s, q in self.holdings.items() if q > 0]
        if ep == "POST /v2/orders":
            return self._submit(req.json(), partial)
        if ep == "GET /v2/orders":
            status = req.query.get("status", "open")
            syms = {_canon(s) for s in req.query.get("symbols", "").split(",") if s}
            out = [o for o in reversed(self.orders.values())
                   if (status == "all" or (o["status"] in OPEN) == (status == "open"))
                   and (not syms or o["symbol"] in syms)]
            return 200, {}, out[: int(req.query.get("limit") or 50)]
        if ep == "GET /v2/orders:by_client_order_id":
            cid = req.query.get("client_order_id", "")
            o = self.order(cid)
            if o is None:
                return 404, {}, {"code": 40410000, "message": f"order not found for {cid}"}
            return 200, {}, o
        if ep == "GET /v2/orders/{id}":
            o = self.orders.get(req.path.rsplit("/", 1)[1])
            return (200, {}, o) if o else (404, {}, {"code": 40410000, "message": "order not found"})
        if ep == "DELETE /v2/orders/{id}":
            o = self.orders.get(req.path.rsplit("/", 1)[1])
            if o is None:
                return 404, {}, {"code": 40410000, "message": "order not found"}
            if o["status"] not in OPEN:
                return 422, {}, {"code": 42210000, "message": f"order is already in \"{o['status']}\" state"}
            now = _iso(datetime.now(timezone.utc))
            o.update(status="canceled", canceled_at=now, updated_at=now)
            return 204, {}, b""
        return 404, {}, "404 page not found"            # an unknown path: Alpaca's router, plain text

    # --- the exchange ------------------------------------------------------------------------------
    def _submit(self, b: dict, partial: dict | None) -> Response:
        def reject(status: int, code: int, msg: str) -> Response:
            return status, {}, {"code": code, "message": msg}

        cid = str(b.get("client_order_id") or uuid.uuid4())
        if len(cid) > 128:
            return reject(422, 40010001, "client_order_id must be no more than 128 characters")
        if cid in self.by_cid:
            return reject(422, 40010001, "client_order_id must be unique")
        sym = _canon(str(b.get("symbol", "")))
        if sym not in ASSETS:
            return reject(422, 40010001, f"asset \"{b.get('symbol')}\" not found")
        otype, tif, side = b.get("type"), b.get("time_in_force"), b.get("side")
        if otype not in ("market", "limit", "stop_limit"):
            return reject(422, 40010001, f"invalid order type for crypto order: {otype}")
        if tif not in ("gtc", "ioc"):
            return reject(422, 40010001, "invalid crypto time_in_force")
        if side not in ("buy", "sell"):
            return reject(422, 40010001, "invalid side")
        try:
            qty = Decimal(str(b["qty"]))
        except (KeyError, InvalidOperation):
            return reject(422, 40010001, "qty is required")
        a = ASSETS[sym]
        if qty < Decimal(a["min_order_size"]):
            return reject(422, 40010001, f"qty must be >= {a['min_order_size']}")
        if qty % Decimal(a["min_trade_increment"]) != 0:
            return reject(422, 40010001, f"qty must be in increments of {a['min_trade_increment']}")
        price = self.prices.get(sym)
        if otype == "market" and price is None:
            return reject(422, 40010001, f"no market for {sym}")
        ref = price if otype == "market" else Decimal(str(b.get("limit_price") or 0))
        base, quote = sym.split("/")
        if quote == "USD" and side == "buy" and qty * ref < 10:
            return reject(403, 40310000, "cost basis must be >= minimal amount of order 10")
        if side == "buy" and qty * ref > self.cash:
            return reject(403, 40310000, f"insufficient balance for USD (requested: {_num(qty * ref)}, "
                                         f"available: {_num(self.cash)})")
        held = self.holdings.get(sym, Decimal(0)) - self._reserved(sym)
        if side == "sell" and qty > held:
            return reject(403, 40310000, f"insufficient balance for {base} (requested: {_num(qty)}, "
                                         f"available: {_num(held)})")
        now = _iso(datetime.now(timezone.utc))
        o = {"id": str(uuid.uuid4()), "client_order_id": cid, "created_at": now, "updated_at": now,
             "submitted_at": now, "filled_at": None, "expired_at": None, "canceled_at": None,
             "failed_at": None, "replaced_at": None, "replaced_by": None, "replaces": None,
             "asset_id": self.asset_ids[sym], "symbol": sym, "asset_class": "crypto", "notional": None,
             "qty": _num(qty), "filled_qty": "0", "filled_avg_price": None, "order_class": "",
             "order_type": otype, "type": otype, "side": side, "time_in_force": tif,
             "limit_price": b.get("limit_price"), "stop_price": b.get("stop_price"), "status": "new",
             "extended_hours": False, "legs": None, "trail_percent": None, "trail_price": None,
             "hwm": None, "subtag": None, "source": None, "expires_at": None}
        self.orders[o["id"]] = o
        self.by_cid[cid] = o["id"]
        self.post_bodies.append(b)
        answer = dict(o, status="pending_new") if self.async_fills else o
        if otype == "market":
            fill = qty
            if partial is not None:
                step = Decimal(a["min_trade_increment"])
                fill = (qty * Decimal(str(partial.get("fraction", 0.5))) / step).to_integral_value() * step
            self._fill(o, sym, side, fill, price, now, complete=fill == qty)
            if fill < qty and tif == "ioc":        # IOC: what did not fill at once is canceled
                o.update(status="canceled", canceled_at=now)
        return 200, {}, answer if self.async_fills else o

    def _fill(self, o: dict, sym: str, side: str, qty: Decimal, price: Decimal, now: str,
              complete: bool) -> None:
        notional = qty * price
        fee_usd = notional * self.fee_rate
        if side == "buy":
            self.cash -= notional
            got = qty * (1 - self.fee_rate)                # fee taken in the coin received
            self.holdings[sym] = self.holdings.get(sym, Decimal(0)) + got
            self.cost[sym] = self.cost.get(sym, Decimal(0)) + got * price
        else:
            held = self.holdings.get(sym, Decimal(0))
            if held > 0:
                self.cost[sym] = self.cost.get(sym, Decimal(0)) * (held - qty) / held
            self.holdings[sym] = held - qty
            self.cash += notional - fee_usd                # fee taken in the USD received
        self.fees[o["client_order_id"]] = float(fee_usd)
        o.update(filled_qty=_num(qty), filled_avg_price=_num(price), updated_at=now,
                 status="filled" if complete else "partially_filled", filled_at=now if complete else None)

    def _asset(self, sym: str) -> dict:
        a = ASSETS[sym]
        return {"id": self.asset_ids[sym], "class": "crypto", "exchange": "CRYPTO", "symbol": sym,
                "name": f"{sym} pair", "status": "active", "tradable": True, "marginable": False,
                "maintenance_margin_requirement": 100, "shortable": False, "easy_to_borrow": False,
                "fractionable": True, "attributes": [], **a}

    def _reserved(self, sym: str) -> Decimal:
        """Coins held by the open sell orders of ``sym`` (what they have not sold yet)."""
        return sum((Decimal(o["qty"]) - Decimal(o["filled_qty"]) for o in self.orders.values()
                    if o["symbol"] == sym and o["side"] == "sell" and o["status"] in OPEN), Decimal(0))

    def _position(self, sym: str) -> dict:
        q = self.holdings[sym]
        px = self.prices.get(sym, Decimal(0))
        cost = self.cost.get(sym, Decimal(0))
        avg = cost / q if q else Decimal(0)
        mv = q * px
        upl = mv - cost
        return {"asset_id": self.asset_ids[sym], "symbol": sym.replace("/", ""), "exchange": "CRYPTO",
                "asset_class": "crypto", "asset_marginable": False, "qty": _num(q),
                "avg_entry_price": _num(avg), "side": "long", "market_value": _num(mv),
                "cost_basis": _num(cost), "unrealized_pl": _num(upl),
                "unrealized_plpc": _num(upl / cost if cost else Decimal(0)),
                "unrealized_intraday_pl": _num(upl), "unrealized_intraday_plpc": "0",
                "current_price": _num(px), "lastday_price": _num(px), "change_today": "0",
                **({"qty_available": _num(q - self._reserved(sym))} if self.send_qty_available else {})}

    def _account(self) -> dict:
        mv = sum((q * self.prices.get(s, Decimal(0)) for s, q in self.holdings.items()), Decimal(0))
        held = sum((Decimal(o["qty"]) * Decimal(str(o["limit_price"] or 0)) for o in self.orders.values()
                    if o["status"] in OPEN and o["side"] == "buy" and o["type"] != "market"), Decimal(0))
        cash = _num(self.cash)
        return {"id": self.account_id, "account_number": "PA3FAKE00001", "status": "ACTIVE",
                "crypto_status": "ACTIVE", "currency": "USD", "cash": cash,
                "buying_power": _num(self.cash - held), "regt_buying_power": _num(self.cash - held),
                "daytrading_buying_power": "0", "non_marginable_buying_power": _num(self.cash - held),
                "effective_buying_power": _num(self.cash - held), "accrued_fees": "0",
                "pending_transfer_in": "0", "portfolio_value": _num(self.cash + mv),
                "equity": _num(self.cash + mv), "last_equity": _num(self.cash + mv),
                "long_market_value": _num(mv), "short_market_value": "0", "initial_margin": "0",
                "maintenance_margin": "0", "last_maintenance_margin": "0", "sma": "0", "daytrade_count": 0,
                "multiplier": "1", "pattern_day_trader": False, "trading_blocked": False,
                "transfers_blocked": False, "account_blocked": False, "trade_suspended_by_user": False,
                "shorting_enabled": False, "created_at": "2026-01-02T15:04:05.123456Z",
                "options_buying_power": "0", "options_approved_level": 0, "options_trading_level": 0}
