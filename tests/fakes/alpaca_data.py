"""Fake Alpaca market data API: crypto bars (v1beta3, paginated) and news (v1beta1).

``GET /v1beta3/crypto/us/bars?symbols=BTC/USD&timeframe=1Hour&start=..&end=..&limit=..&page_token=..``
-> ``{"bars": {"BTC/USD": [{"t","o","h","l","c","v","n","vw"}]}, "next_page_token": ...}``;
``GET /v1beta1/news?symbols=BTCUSD&start=..&end=..&limit=..&sort=desc`` -> ``{"news": [...], ...}``.

``mode``: ``ok``, ``500``, ``malformed`` (a body that is not JSON), ``high_below_low`` (one bar),
``gap`` (one bar missing). ``page_size`` splits the bars into pages. ``now`` (epoch s) is the
venue's clock: the bar forming at ``now`` is served too. News needs the key pair ``keys``.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

from fakes.market import bar, open_times
from fakes.server import FakeServer, Request, Response

_TF = {"1Hour": 3600, "1Min": 60, "1Day": 86400}


def _iso(s: int) -> str:
    return datetime.fromtimestamp(s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sec(x: str) -> int:
    t = pd.Timestamp(x)
    t = t.tz_localize("UTC") if t.tzinfo is None else t
    return int(t.timestamp())


class FakeAlpacaData(FakeServer):
    def __init__(self, now: int, mode: str = "ok", page_size: int = 10_000,
                 keys: tuple[str, str] = ("key-id", "secret"), news: list[dict] | None = None):
        super().__init__(self._route)
        self.now = now
        self.mode = mode
        self.page_size = page_size
        self.keys = keys
        self.news = news or []

    def _route(self, req: Request) -> Response:
        if req.path == "/v1beta3/crypto/us/bars":
            return self._bars(req)
        if req.path == "/v1beta1/news":
            return self._news(req)
        return 404, {}, {"message": "not found"}

    def _bars(self, req: Request) -> Response:
        if self.mode == "500":
            return 500, {}, {"message": "internal server error"}
        if self.mode == "malformed":
            return 200, {"Content-Type": "application/json"}, b'{"bars": {"BTC/USD": [{"t": '
        sym = req.query["symbols"]
        iv = _TF[req.query["timeframe"]]
        start = _sec(req.query["start"]) if "start" in req.query else self.now - 100 * iv
        end = _sec(req.query["end"]) if "end" in req.query else self.now
        times = open_times(start, end, self.now, iv)
        if self.mode == "gap" and len(times) > 10:
            del times[-5]
        rows = []
        for i, t in enumerate(times):
            o, h, lo, c, v = bar(sym, t, iv)
            if self.mode == "high_below_low" and i == len(times) - 3:
                h, lo = lo * 0.99, h * 1.01
            rows.append({"t": _iso(t), "o": o, "h": h, "l": lo, "c": c, "v": v, "n": 10, "vw": (o + c) / 2})
        offset = int(req.query.get("page_token") or 0)
        page = rows[offset:offset + self.page_size]
        nxt = offset + self.page_size
        return 200, {}, {"bars": {sym: page} if page else {},
                         "next_page_token": str(nxt) if nxt < len(rows) else None}

    def _news(self, req: Request) -> Response:
        if (req.headers.get("APCA-API-KEY-ID"), req.headers.get("APCA-API-SECRET-KEY")) != self.keys:
            return 401, {}, {"message": "unauthorized"}
        if self.mode == "500":
            return 500, {}, {"message": "internal server error"}
        wanted = set(req.query.get("symbols", "").split(","))
        items = [n for n in self.news if wanted & set(n.get("symbols", []))]
        return 200, {}, {"news": items, "next_page_token": None}
