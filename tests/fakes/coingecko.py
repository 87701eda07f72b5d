"""Fake CoinGecko: ``GET /api/v3/coins/<id>/market_chart/range?vs_currency=usd&from=<s>&to=<s>``.

Hourly points a few seconds past each hour (like CoinGecko), from ``from`` up to
``min(to, now)``: ``{"prices": [[ms, p]], "market_caps": [...], "total_volumes": [[ms, usd]]}``.
``mode``: ``ok``, ``500``, ``malformed``. ``ids`` lists the coins it knows.
"""
from __future__ import annotations

from fakes.market import price
from fakes.server import FakeServer, Request, Response

OFFSET_S = 7  # CoinGecko's hourly points land a few seconds after the hour


class FakeCoinGecko(FakeServer):
    def __init__(self, now: int, mode: str = "ok", ids: tuple[str, ...] = ("bitcoin", "ethereum")):
        super().__init__(self._route)
        self.now = now
        self.mode = mode
        self.ids = ids

    def _route(self, req: Request) -> Response:
        parts = req.path.strip("/").split("/")
        if len(parts) != 6 or parts[:3] != ["api", "v3", "coins"] or parts[4:] != ["market_chart", "range"]:
            return 404, {}, {"error": "not found"}
        cid = parts[3]
        if cid not in self.ids:
            return 404, {}, {"error": "coin not found"}
        if self.mode == "500":
            return 503, {}, {"error": "overloaded"}
        if self.mode == "malformed":
            return 200, {}, {"status": {"error_code": 429}}
        frm, to = int(req.query["from"]), min(int(req.query["to"]), self.now)
        first = -(-(frm - OFFSET_S) // 3600) * 3600 + OFFSET_S
        ts = list(range(first, to + 1, 3600))
        prices = [[t * 1000, price(cid, t)] for t in ts]
        vols = [[t * 1000, 24_000_000.0] for t in ts]
        return 200, {}, {"prices": prices, "market_caps": [[t * 1000, 1e9] for t in ts], "total_volumes": vols}
