"""Fake Yahoo Finance chart API: ``GET /v8/finance/chart/<BTC-USD>?period1=&period2=&interval=1h``.

Like Yahoo, the last entry is the bar still forming, stamped with the time of its last
trade (``now``, not an hour boundary). ``mode``: ``ok``, ``500``, ``malformed``,
``nulls`` (a null close), ``high_below_low``. ``tickers`` lists what Yahoo knows.
"""
from __future__ import annotations

from fakes.market import bar, open_times
from fakes.server import FakeServer, Request, Response

_IV = {"1h": 3600, "1d": 86400, "5m": 300}


class FakeYahoo(FakeServer):
    def __init__(self, now: int, mode: str = "ok", tickers: tuple[str, ...] = ("BTC-USD", "ETH-USD")):
        super().__init__(self._route)
        self.now = now
        self.mode = mode
        self.tickers = tickers

    def _route(self, req: Request) -> Response:
        prefix = "/v8/finance/chart/"
        if not req.path.startswith(prefix):
            return 404, {}, "not found"
        ticker = req.path[len(prefix):]
        if self.mode == "500":
            return 500, {}, "server error"
        if self.mode == "malformed":
            return 200, {}, {"chart": {"result": [{"timestamp": "soon"}]}}
        if ticker not in self.tickers:
            return 404, {}, {"chart": {"result": None, "error": {"code": "Not Found",
                                                                  "description": "No data found"}}}
        iv = _IV[req.query["interval"]]
        start, end = int(req.query["period1"]), int(req.query["period2"])
        times = [t for t in open_times(start, end, self.now, iv) if t + iv <= self.now]
        stamps = list(times)
        cols = {k: [] for k in ("open", "high", "low", "close", "volume")}
        for t in times:
            o, h, lo, c, v = bar(ticker, t, iv)
            for k, x in zip(cols, (o, h, lo, c, v)):
                cols[k].append(x)
        # the bar forming at now, stamped with the last trade time
        if self.now % iv:
            o, h, lo, c, v = bar(ticker, self.now - self.now % iv, iv)
            stamps.append(self.now)
            for k, x in zip(cols, (o, h, lo, c, v / 3)):
                cols[k].append(x)
        if self.mode == "nulls" and len(stamps) > 3:
            cols["close"][-3] = None
        if self.mode == "high_below_low" and len(stamps) > 3:
            cols["high"][-3], cols["low"][-3] = cols["low"][-3] * 0.99, cols["high"][-3] * 1.01
        return 200, {}, {"chart": {"result": [{
            "meta": {"symbol": ticker, "currency": "USD", "dataGranularity": req.query["interval"]},
            "timestamp": stamps, "indicators": {"quote": [cols]}}], "error": None}}
