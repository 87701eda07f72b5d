"""Fake Binance REST klines: spot ``GET /api/v3/klines`` and USD-M ``GET /fapi/v1/klines``.

Rows ``[open_ms, "o", "h", "l", "c", "v", close_ms, "qv", n, "tb", "tq", "0"]`` for the bars whose
open time is in ``[startTime, endTime]`` (at most ``limit``), including the one forming at ``now``.
``mode``: ``ok``, ``500``, ``malformed``, ``high_below_low``, ``gap``. An unknown symbol gets
Binance's ``400 {"code": -1121}``. ``symbols`` lists what the venue trades.
"""
from __future__ import annotations

from fakes.market import bar, open_times
from fakes.server import FakeServer, Request, Response

_IV = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}


class FakeBinance(FakeServer):
    def __init__(self, now: int, mode: str = "ok", symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")):
        super().__init__(self._route)
        self.now = now
        self.mode = mode
        self.symbols = symbols
        self.futures_offset = 5.0  # perpetuals trade a little above spot in this fake

    def _route(self, req: Request) -> Response:
        if req.path not in ("/api/v3/klines", "/fapi/v1/klines"):
            return 404, {}, {"code": -1, "msg": "not found"}
        if self.mode == "500":
            return 502, {}, "<html>bad gateway</html>"
        if self.mode == "malformed":
            return 200, {"Content-Type": "application/json"}, b"[[1700000000000, \"1.0\""
        sym = req.query["symbol"]
        if sym not in self.symbols:
            return 400, {}, {"code": -1121, "msg": "Invalid symbol."}
        iv = _IV[req.query["interval"]]
        limit = int(req.query.get("limit", 500))
        start = int(req.query.get("startTime", (self.now - 500 * iv) * 1000)) // 1000
        end = int(req.query.get("endTime", self.now * 1000)) // 1000
        times = open_times(start, end, self.now, iv)[:limit]
        if self.mode == "gap" and len(times) > 10:
            del times[-4]
        off = self.futures_offset if req.path.startswith("/fapi") else 0.0
        rows = []
        for i, t in enumerate(times):
            o, h, lo, c, v = bar(sym, t, iv)
            o, h, lo, c = o + off, h + off, lo + off, c + off
            if self.mode == "high_below_low" and i == len(times) - 2:
                h, lo = lo * 0.99, h * 1.01
            rows.append([t * 1000, f"{o:.6f}", f"{h:.6f}", f"{lo:.6f}", f"{c:.6f}", f"{v:.3f}",
                         (t + iv) * 1000 - 1, "0", 10, "0", "0", "0"])
        return 200, {}, rows
