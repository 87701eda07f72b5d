"""Yahoo Finance hourly crypto bars from the chart API (what yfinance reads), with ``requests``.

``GET {base}/v8/finance/chart/BTC-USD?period1=<s>&period2=<s>&interval=1h`` answers
``{"chart": {"result": [{"timestamp": [<open s>...], "indicators": {"quote": [{"open": [...],
"high", "low", "close", "volume"}]}}], "error": null}}``; ``timestamp`` is each bar's open time.
Yahoo appends the bar still forming, stamped with the time of its last trade: it closes
after ``now`` and the chain drops it. Missing values (``null``) become NaN and fail validation.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import requests

from tracer.data.sources.base import SourceError, UnsupportedSymbol, get_json, interval_seconds, make_frame, ms
from tracer.symbols import yahoo_symbol

__all__ = ["YahooSource", "yahoo_interval", "YAHOO_URL"]

YAHOO_URL = "https://query2.finance.yahoo.com"
_INTERVALS = {60: "1m", 120: "2m", 300: "5m", 900: "15m", 1800: "30m", 3600: "1h", 5400: "90m", 86_400: "1d"}


def yahoo_interval(interval: timedelta) -> str:
    s = interval_seconds(interval)
    if s not in _INTERVALS:
        raise ValueError(f"yahoo has no chart interval for {interval!r}")
    return _INTERVALS[s]


class YahooSource:
    """:class:`tracer.data.sources.base.BarSource` for Yahoo Finance (``BTC-USD``)."""
    name = "yahoo"

    def __init__(self, base_url: str | None = None, timeout_s: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self.base_url = (base_url or YAHOO_URL).rstrip("/")
        self.timeout_s = timeout_s
        self._session = session or requests.Session()
        # Yahoo answers 429 to the default python-requests agent.
        self._session.headers["User-Agent"] = "Mozilla/5.0 (tracer-bullet)"

    def fetch(self, symbol: str, interval: timedelta, start: datetime, end: datetime) -> pd.DataFrame:
        try:
            label = yahoo_interval(interval)
        except ValueError as e:
            raise UnsupportedSymbol(self.name, str(e)) from None
        ticker = yahoo_symbol(symbol)
        body = get_json(self._session, self.name, f"{self.base_url}/v8/finance/chart/{ticker}",
                        params={"period1": ms(start) // 1000, "period2": ms(end) // 1000, "interval": label,
                                "includePrePost": "false"},
                        timeout_s=self.timeout_s)
        try:
            chart = body["chart"]  # type: ignore[index]
            if chart.get("error"):
                code = str((chart["error"] or {}).get("code", "error"))
                if code.lower() == "not found":
                    raise UnsupportedSymbol(self.name, f"unknown symbol {ticker}")
                raise SourceError(self.name, f"api error: {code[:40]}")
            result = chart["result"][0]
            stamps = result.get("timestamp") or []
            quote = result["indicators"]["quote"][0]
            cols = [quote.get(k) or [] for k in ("open", "high", "low", "close", "volume")]
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise SourceError(self.name, f"malformed: {type(e).__name__}") from None
        if any(len(c) != len(stamps) for c in cols):
            raise SourceError(self.name, "malformed: quote arrays differ in length from timestamps")
        try:
            ts = [int(t) * 1_000_000_000 for t in stamps]
        except (TypeError, ValueError, OverflowError):
            raise SourceError(self.name, "malformed: timestamp") from None
        return make_frame(ts, list(zip(*cols)) if ts else [], self.name)
