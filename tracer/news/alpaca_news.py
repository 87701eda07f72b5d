"""Alpaca news (Benzinga and others) through alpaca-py's ``NewsClient``.

``GET {base}/v1beta1/news?symbols=BTCUSD,ETHUSD&start=..&end=..&limit=50&sort=desc`` answers
``{"news": [{"id", "headline", "source", "url", "created_at", "symbols", ...}], "next_page_token"}``.
``created_at`` is the publication time. Needs the Alpaca key pair.
"""
from __future__ import annotations

import functools
import logging
from datetime import datetime, timezone
from typing import Sequence

import pandas as pd

from tracer.data.replay import headline_id
from tracer.logs import kv
from tracer.models import Headline
from tracer.symbols import alpaca_news_symbol

__all__ = ["AlpacaNews", "parse_alpaca_news"]


def parse_alpaca_news(items: object) -> list[Headline]:
    """Pure: Alpaca news items -> Headlines; items without a headline or a valid time are dropped."""
    out: list[Headline] = []
    if not isinstance(items, list):
        return out
    for it in items:
        try:
            title = str(it["headline"]).strip()
            ts = pd.Timestamp(it["created_at"])
            if not title or pd.isna(ts):
                continue
            published = (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()
            publisher = str(it.get("source") or "").strip().lower()
            source = f"alpaca/{publisher}" if publisher else "alpaca"
            out.append(Headline(id=headline_id(source, title, published), published_at=published,
                                source=source, title=title, url=str(it.get("url") or "")))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return out


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
        self.limit = int(limit)
        self.log = logger or logging.getLogger("tracer.news")

    def fetch(self, symbols: Sequence[str], start: datetime, end: datetime) -> list[Headline]:
        from alpaca.data.requests import NewsRequest

        req = NewsRequest(symbols=",".join(dict.fromkeys(alpaca_news_symbol(s) for s in symbols)),
                          start=start.astimezone(timezone.utc), end=end.astimezone(timezone.utc),
                          limit=self.limit, sort="desc")
        try:
            raw = self._client.get_news(req)
        except Exception as e:  # HTTP errors, timeouts, a body that is not JSON
            status = getattr(e, "status_code", None)
            self.log.warning(kv("news_failed", source=self.name, status=status, error=type(e).__name__))
            return []
        items = raw.get("news") if isinstance(raw, dict) else None
        return parse_alpaca_news(items)
