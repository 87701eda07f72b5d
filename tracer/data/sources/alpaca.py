"""Alpaca crypto bars through alpaca-py's ``CryptoHistoricalDataClient``.

``GET {base}/v1beta3/crypto/us/bars?symbols=BTC/USD&timeframe=1Hour&start=..&end=..``;
answer ``{"bars": {"BTC/USD": [{"t": "2024-01-01T00:00:00Z", "o", "h", "l", "c", "v", ...}]},
"next_page_token": ...}`` (the SDK follows the pages). ``t`` is the bar's open time.
Credentials are optional for crypto bars (they raise the rate limit).
"""
from __future__ import annotations

import functools
from datetime import datetime, timedelta

import pandas as pd

from tracer.data.sources.base import SourceError, UnsupportedSymbol, check_rows, interval_seconds, make_frame
from tracer.symbols import canonical

__all__ = ["AlpacaSource", "alpaca_timeframe"]


def alpaca_timeframe(interval: timedelta):
    """``timedelta`` -> alpaca-py ``TimeFrame`` (minutes 1-59, hours 1-23, 1 day)."""
    from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

    s = interval_seconds(interval)
    if s % 86_400 == 0 and s // 86_400 == 1:
        return TimeFrame(1, TimeFrameUnit.Day)
    if s % 3_600 == 0 and s // 3_600 < 24:
        return TimeFrame(s // 3_600, TimeFrameUnit.Hour)
    if s % 60 == 0 and s // 60 < 60:
        return TimeFrame(s // 60, TimeFrameUnit.Minute)
    raise ValueError(f"alpaca has no timeframe for {interval!r}")


MAX_PAGES = 50          # pages of one fetch (10,000 bars each); more means the venue's paging is broken


class AlpacaSource:
    """:class:`tracer.data.sources.base.BarSource` for Alpaca crypto (``us`` feed)."""
    name = "alpaca"

    def __init__(self, api_key: str = "", secret_key: str = "", base_url: str | None = None,
                 timeout_s: float = 10.0) -> None:
        from alpaca.data.historical.crypto import CryptoHistoricalDataClient

        self._client = CryptoHistoricalDataClient(api_key or None, secret_key or None, raw_data=True,
                                                  url_override=(base_url.rstrip("/") if base_url else None))
        # The SDK sleeps 3 s and retries a 429 three times; in a trading cycle the chain fails
        # over to the next source instead. Its session has no timeout either: give it one.
        self._client._retry = 0
        session = self._client._session
        session.request = functools.partial(session.request, timeout=timeout_s)  # type: ignore[method-assign]
        # The SDK follows ``next_page_token`` for as long as the answer carries one: a broken or hostile
        # answer (a token on every page) would loop forever inside a cycle. Count the pages of one fetch.
        self._pages = 0
        sdk_get = self._client.get

        def get(*args, **kw):
            self._pages += 1
            if self._pages > MAX_PAGES:
                raise SourceError(self.name, f"malformed: more than {MAX_PAGES} pages (endless next_page_token)")
            return sdk_get(*args, **kw)

        self._client.get = get  # type: ignore[method-assign]

    def fetch(self, symbol: str, interval: timedelta, start: datetime, end: datetime) -> pd.DataFrame:
        from alpaca.common.exceptions import APIError
        from alpaca.data.requests import CryptoBarsRequest
        import requests

        sym = canonical(symbol)
        try:
            tf = alpaca_timeframe(interval)
        except ValueError as e:
            raise UnsupportedSymbol(self.name, str(e)) from None
        req = CryptoBarsRequest(symbol_or_symbols=sym, timeframe=tf, start=start, end=end)
        self._pages = 0
        try:
            raw = self._client.get_crypto_bars(req)
        except APIError as e:
            raise SourceError(self.name, f"http {e.status_code}") from None
        except requests.exceptions.JSONDecodeError:  # before RequestException: it is both
            raise SourceError(self.name, "malformed: body is not JSON") from None
        except requests.Timeout:
            raise SourceError(self.name, "timeout") from None
        except requests.RequestException as e:
            raise SourceError(self.name, f"request failed: {type(e).__name__}") from None
        except (ValueError, TypeError, KeyError, AttributeError) as e:  # JSON decode errors, an answer of the
            raise SourceError(self.name, f"malformed: {type(e).__name__}") from None  # wrong shape in the SDK
        if not isinstance(raw, dict):
            raise SourceError(self.name, "malformed: answer is not an object")
        rows = check_rows(self.name, raw.get(sym, []), "bars")
        ts, vals = [], []
        try:
            for r in rows:
                ts.append(pd.Timestamp(r["t"]).tz_convert("UTC").as_unit("ns").value)
                vals.append((r["o"], r["h"], r["l"], r["c"], r["v"]))
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise SourceError(self.name, f"malformed bar: {type(e).__name__}") from None
        return make_frame(ts, vals, self.name)
