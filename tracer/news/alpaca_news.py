"""Alpaca news (Benzinga and others) through alpaca-py's ``NewsClient``.

``GET {base}/v1beta1/news?symbols=BTCUSD,ETHUSD&start=..&end=..&limit=50&sort=desc`` answers
``{"news": [{"id", "headline", "source", "url", "created_at", "symbols", ...}], "next_page_token"}``.
``created_at`` is the publication time. Needs the Alpaca key pair.
"""
from __future__ import annotations

import functools
import logging
from collections import Counter
from datetime import datetime, timezone
from typing import Sequence

import pandas as pd

from tracer.data.replay import headline_id
from tracer.logs import kv
from tracer.models import Headline
from tracer.symbols import alpaca_news_symbol

__all__ = ["AlpacaNews", "parse_alpaca_news"]


def parse_alpaca_news(items: object, drops: Counter | None = None) -> list[Headline]:
    """Pure: Alpaca news items -> Headlines; items without a text headline or a valid time are dropped.

    ``drops`` (optional) counts the dropped items by reason: ``not_a_list`` (the answer's ``news`` is
    missing or of the wrong type), ``not_an_object``, ``no_title`` (missing, empty, or not text),
    ``bad_time`` (missing, not an ISO text, or out of range)."""
    out: list[Headline] = []
    drops = Counter() if drops is None else drops
    if not isinstance(items, list):
        drops["not_a_list"] += 1
        return out
    for it in items:
        if not isinstance(it, dict):
            drops["not_an_object"] += 1
            continue
        raw_title = it.get("headline")
        title = " ".join(raw_title.split()) if isinstance(raw_title, str) else ""
        if not title:
            drops["no_title"] += 1
            continue
        raw_ts = it.get("created_at")
        try:
            if not isinstance(raw_ts, str):          # a number would read as nanoseconds since 1970
                raise TypeError(type(raw_ts).__name__)
            ts = pd.Timestamp(raw_ts)
            if pd.isna(ts):
                raise ValueError("NaT")
            published = (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()
        except (TypeError, ValueError, OverflowError, AttributeError):
            drops["bad_time"] += 1
            continue
        pub = it.get("source")
        publisher = " ".join(pub.split()).lower() if isinstance(pub, str) else ""
        source = f"alpaca/{publisher}" if publisher else "alpaca"
        url = it.get("url")
        out.append(Headline(id=headline_id(source, title, published), published_at=published,
                            source=source, title=title, url=url.strip() if isinstance(url, str) else ""))
    return out


MAX_PAGES = 20          # pages of one news fetch; more means the provider's paging is broken


class AlpacaNews:
    """:class:`tracer.news.source.HeadlineSource` for Alpaca news."""
    name = "alpaca"

    def __init__(self, api_key: str, secret_key: str, base_url: str | None = None, timeout_s: float = 10.0,
                 limit: int = 50, logger: logging.Logger | None = None) -> None:
        from alpaca.data.historical.news import NewsClient

        self._client = NewsClient(api_key, secret_key, raw_data=True,
                                  url_override=(base_url.rstrip("/") if base_url else None))
        self._client._retry = 0  # no 3 s SDK sleeps inside a cycle
        session = self._client._session
        session.request = functools.partial(session.request, timeout=timeout_s)  # type: ignore[method-assign]
        # alpaca-py follows next_page_token for as long as the answer carries one: cap the pages of a fetch
        # so that a broken answer (a token on every page) cannot hold the cycle forever.
        self._pages = 0
        sdk_get = self._client.get

        def get(*args, **kw):
            self._pages += 1
            if self._pages > MAX_PAGES:
                raise RuntimeError(f"more than {MAX_PAGES} pages of news (endless next_page_token)")
            return sdk_get(*args, **kw)

        self._client.get = get  # type: ignore[method-assign]
        self.limit = int(limit)
        self.log = logger or logging.getLogger("tracer.news")

    def fetch(self, symbols: Sequence[str], start: datetime, end: datetime) -> list[Headline]:
        from alpaca.data.requests import NewsRequest

        req = NewsRequest(symbols=",".join(dict.fromkeys(alpaca_news_symbol(s) for s in symbols)),
                          start=start.astimezone(timezone.utc), end=end.astimezone(timezone.utc),
                          limit=self.limit, sort="desc")
        self._pages = 0
        try:
            raw = self._client.get_news(req)
        except Exception as e:  # HTTP errors, timeouts, a body that is not JSON
            status = getattr(e, "status_code", None)
            self.log.warning(kv("news_failed", source=self.name, status=status, error=type(e).__name__))
            return []
        items = raw.get("news") if isinstance(raw, dict) else None
        drops: Counter = Counter()
        got = parse_alpaca_news(items, drops)
        if drops:
            self.log.warning(kv("news_items_dropped", source=self.name, kept=len(got), dropped=sum(drops.values()),
                                reasons=",".join(f"{k}:{v}" for k, v in sorted(drops.items()))))
        return got
