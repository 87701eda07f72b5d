"""CoinGecko bars built from the public ``market_chart/range`` price points, with ``requests``.

``GET {base}/api/v3/coins/{id}/market_chart/range?vs_currency=usd&from=<s>&to=<s>`` answers
``{"prices": [[ms, price], ...], "market_caps": [...], "total_volumes": [[ms, usd_24h], ...]}``
(5-minute points for ranges under a day, hourly points up to 90 days). CoinGecko has no
public hourly OHLC with volume, so bars are derived, a documented approximation for the
last source of the chain:

* the points are put in buckets ``[t, t + interval)`` by their time (``t`` = bar open time);
* ``close`` = the bucket's last price, ``open`` = the previous bucket's close (its own first
  price when the previous bucket is empty), ``high`` / ``low`` = max / min of ``open`` and
  the bucket's prices;
* ``volume`` = mean 24 h USD volume in the bucket x ``interval / 24 h`` / ``close``
  (an estimate in base-asset units; 0 when CoinGecko gives none).

The bucket still forming at ``end`` closes after it; the chain drops it.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import pandas as pd
import requests

from tracer.data.sources.base import SourceError, UnsupportedSymbol, get_json, interval_seconds, make_frame, ms
from tracer.symbols import coingecko_id

__all__ = ["CoinGeckoSource", "bars_from_points", "COINGECKO_URL"]

COINGECKO_URL = "https://api.coingecko.com"


def bars_from_points(prices: list, volumes: list, interval_s: int) -> tuple[list[int], list[tuple]]:
    """Pure: ``[[ms, price]...]``, ``[[ms, usd_24h_volume]...]`` -> (open times ns, OHLCV rows).

    See the module docstring for the rules. Raises ValueError/TypeError/IndexError on a
    malformed point.
    """
    step_ms = interval_s * 1000
    buckets: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for p in prices:
        t, v = int(p[0]), float(p[1])
        buckets[t - t % step_ms].append((t, v))
    vol: dict[int, list[float]] = defaultdict(list)
    for p in volumes:
        t = int(p[0])
        if p[1] is not None:
            vol[t - t % step_ms].append(float(p[1]))
    ts: list[int] = []
    rows: list[tuple] = []
    prev_close: float | None = None
    prev_b: int | None = None
    for b in sorted(buckets):
        pts = [v for _, v in sorted(buckets[b])]
        close = pts[-1]
        o = prev_close if (prev_b is not None and prev_b == b - step_ms) else pts[0]
        hi, lo = max(o, *pts), min(o, *pts)
        vs = vol.get(b)
        v = (sum(vs) / len(vs)) * (interval_s / 86_400) / close if vs and close > 0 else 0.0
        ts.append(b * 1_000_000)
        rows.append((o, hi, lo, close, v))
        prev_close, prev_b = close, b
    return ts, rows


class CoinGeckoSource:
    """:class:`tracer.data.sources.base.BarSource` for CoinGecko (ids from :mod:`tracer.symbols`)."""
    name = "coingecko"

    def __init__(self, base_url: str | None = None, timeout_s: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self.base_url = (base_url or COINGECKO_URL).rstrip("/")
        self.timeout_s = timeout_s
        self._session = session or requests.Session()

    def fetch(self, symbol: str, interval: timedelta, start: datetime, end: datetime) -> pd.DataFrame:
        cid = coingecko_id(symbol)
        if cid is None:
            raise UnsupportedSymbol(self.name, f"no CoinGecko id for {symbol}")
        interval_s = interval_seconds(interval)
        # one interval earlier, so that the first bar has an open from the bucket before it
        frm = ms(start) // 1000 - interval_s
        body = get_json(self._session, self.name, f"{self.base_url}/api/v3/coins/{cid}/market_chart/range",
                        params={"vs_currency": "usd", "from": frm, "to": ms(end) // 1000},
                        timeout_s=self.timeout_s)
        if not isinstance(body, dict) or not isinstance(body.get("prices"), list):
            raise SourceError(self.name, "malformed: no 'prices' list")
        volumes = body.get("total_volumes") if isinstance(body.get("total_volumes"), list) else []
        try:
            ts, rows = bars_from_points(body["prices"], volumes, interval_s)
        except (TypeError, ValueError, IndexError, OverflowError) as e:
            raise SourceError(self.name, f"malformed point: {type(e).__name__}") from None
        start_ns = ms(start) * 1_000_000
        keep = [i for i, t in enumerate(ts) if t >= start_ns]
        return make_frame([ts[i] for i in keep], [rows[i] for i in keep], self.name)
