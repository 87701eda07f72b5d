"""Binance klines (spot and USD-M perpetuals) through python-binance's ``Client``.

Spot ``GET {spot}/api/v3/klines``, USD-M ``GET {futures}/fapi/v1/klines``, parameters
``symbol=BTCUSDT&interval=1h&startTime=<ms>&endTime=<ms>&limit=<n>``; each row is
``[open_ms, "open", "high", "low", "close", "volume", close_ms, ...]``: the first field
is the bar's open time. Public market data: no key is needed (one can be given).
The client is pointed at ``base_url`` through its ``API_URL`` / ``FUTURES_URL`` attributes.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from tracer.data.sources.base import SourceError, UnsupportedSymbol, check_rows, interval_seconds, make_frame, ms
from tracer.symbols import binance_symbol

__all__ = ["BinanceSource", "binance_interval", "SPOT_URL", "FUTURES_URL"]

SPOT_URL = "https://api.binance.com"
FUTURES_URL = "https://fapi.binance.com"

_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60))
_VALID = {"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d"}


def binance_interval(interval: timedelta) -> str:
    """``timedelta(hours=1)`` -> ``"1h"``; ValueError when Binance has no such kline interval."""
    s = interval_seconds(interval)
    for unit, size in _UNITS:
        if s % size == 0:
            label = f"{s // size}{unit}"
            if label in _VALID:
                return label
            break
    raise ValueError(f"binance has no kline interval for {interval!r}")


class BinanceSource:
    """:class:`tracer.data.sources.base.BarSource` for Binance; ``market`` is ``spot`` or ``usdm``.

    ``name`` is ``binance_spot`` or ``binance_usdm``. Pages of ``page_limit`` klines are
    requested until ``end`` is covered.
    """

    def __init__(self, market: str = "spot", base_url: str | None = None, api_key: str = "",
                 api_secret: str = "", timeout_s: float = 10.0, page_limit: int = 1000) -> None:
        from binance.client import Client

        if market not in ("spot", "usdm"):
            raise ValueError(f"market must be spot or usdm, got {market!r}")
        self.market = market
        self.name = f"binance_{market}"
        self.page_limit = int(page_limit)
        self._client = Client(api_key or None, api_secret or None, requests_params={"timeout": timeout_s},
                              ping=False)
        root = (base_url or (SPOT_URL if market == "spot" else FUTURES_URL)).rstrip("/")
        if market == "spot":
            self._client.API_URL = root + "/api"
        else:
            self._client.FUTURES_URL = root + "/fapi"

    def _klines(self, **params):
        if self.market == "spot":
            return self._client.get_klines(**params)
        return self._client.futures_klines(**params)

    def fetch(self, symbol: str, interval: timedelta, start: datetime, end: datetime) -> pd.DataFrame:
        from binance.exceptions import BinanceAPIException, BinanceRequestException
        import requests

        try:
            label = binance_interval(interval)
        except ValueError as e:
            raise UnsupportedSymbol(self.name, str(e)) from None
        sym = binance_symbol(symbol)
        step_ms = interval_seconds(interval) * 1000
        start_ms, end_ms = ms(start), ms(end) - 1  # endTime is inclusive on open time
        ts: list[int] = []
        vals: list[tuple] = []
        cursor = start_ms
        while cursor <= end_ms:
            try:
                rows = self._klines(symbol=sym, interval=label, startTime=cursor, endTime=end_ms,
                                    limit=self.page_limit)
            except BinanceAPIException as e:
                if e.status_code == 400 and getattr(e, "code", None) == -1121:  # Invalid symbol
                    raise UnsupportedSymbol(self.name, f"unknown symbol {sym}") from None
                raise SourceError(self.name, f"http {e.status_code}") from None
            except BinanceRequestException:
                raise SourceError(self.name, "malformed: body is not JSON") from None
            except requests.Timeout:
                raise SourceError(self.name, "timeout") from None
            except requests.RequestException as e:
                raise SourceError(self.name, f"request failed: {type(e).__name__}") from None
            rows = check_rows(self.name, rows, "klines")
            try:
                for r in rows:
                    ts.append(int(r[0]) * 1_000_000)
                    vals.append((r[1], r[2], r[3], r[4], r[5]))
            except (IndexError, TypeError, ValueError, OverflowError) as e:
                raise SourceError(self.name, f"malformed kline: {type(e).__name__}") from None
            if len(rows) < self.page_limit:
                break
            nxt = ts[-1] // 1_000_000 + step_ms
            if nxt <= cursor:  # the venue went backwards: stop, validation will judge
                break
            cursor = nxt
        return make_frame(ts, vals, self.name)
