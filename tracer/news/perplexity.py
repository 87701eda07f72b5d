"""Recent headlines from Perplexity's chat completions API (model ``sonar``), with key rotation.

One request per asset: ``POST {base}/chat/completions`` with ``Authorization: Bearer <key>``,
``{"model": "sonar", "messages": [...], "search_recency_filter": "day"}``, asking for a
JSON array ``[{title, source, url, published_at}]``. The answer text is parsed by
:func:`parse_headlines`, which never raises: it reads code fences, JSON inside prose,
a ``{"headlines": [...]}`` wrapper, and a truncated array (the complete objects in it);
items without a title or a readable ``published_at`` are dropped.

Keys (:class:`tracer.news.keys.KeyRing`): a 401/403/429/5xx answer cools the key down and
the next key is tried; when every key is cooling and the shortest wait is at most
``max_wait_s`` (a 429's Retry-After, typically), the client sleeps that long (``sleep`` is
injectable) and tries again, otherwise it gives up for this cycle. A network error or a
body that is not JSON is the provider's problem, not the key's: no key is blamed. Keys
appear in no log line, error or DB row (only :func:`tracer.news.keys.key_id`).
"""
from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

import requests

from tracer.data.replay import headline_id
from tracer.logs import kv
from tracer.models import Headline
from tracer.news.keys import KeyRing, NoKeyAvailable, key_id, parse_retry_after
from tracer.symbols import base_of, display_name

__all__ = ["PerplexityNews", "parse_headlines", "extract_items", "PPLX_URL"]

PPLX_URL = "https://api.perplexity.ai"
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_DECODE_ATTEMPTS = 20_000   # JSON decodes tried per answer: a pathological answer costs bounded time


# --------------------------------------------------------------------------- parsing (pure)

def _decode_all(text: str, opener: str) -> list[Any]:
    """Every JSON value that starts at an ``opener`` character and decodes, left to right,
    without overlaps."""
    dec = json.JSONDecoder()
    out: list[Any] = []
    i = text.find(opener)
    attempts = 0
    while i != -1 and attempts < _MAX_DECODE_ATTEMPTS:
        attempts += 1
        try:
            val, end = dec.raw_decode(text, i)
        except (ValueError, RecursionError):   # RecursionError: junk nested deeper than the interpreter allows
            i = text.find(opener, i + 1)
            continue
        out.append(val)
        i = text.find(opener, end)
    return out


def extract_items(text: str) -> list[dict]:
    """The headline objects in a model answer (pure; never raises on any string)."""
    return _extract(text)[0]


def _extract(text: str) -> tuple[list[dict], int]:
    """(the headline objects, how many other values the headline list held)."""
    if not isinstance(text, str) or not text.strip():
        return [], 0

    def split(vals: list) -> tuple[list[dict], int]:
        objs = [x for x in vals if isinstance(x, dict)]
        return objs, len(vals) - len(objs)

    chunks = _FENCE.findall(text) + [text]
    for chunk in chunks:
        for val in _decode_all(chunk, "["):
            if isinstance(val, list) and any(isinstance(x, dict) for x in val):
                return split(val)
        objs = [v for v in _decode_all(chunk, "{") if isinstance(v, dict)]
        for o in objs:
            for key in ("headlines", "items", "results", "news"):
                if isinstance(o.get(key), list):
                    return split(o[key])
        objs = [o for o in objs if "title" in o]
        if objs:
            return objs, 0
    return [], 0


def _parse_time(raw: Any, end: datetime) -> datetime | None:
    if not isinstance(raw, str) or not raw.strip():
        return None
    s = raw.strip()
    try:
        if _DATE_ONLY.match(s):
            # a bare date: the end of that day, but never later than the request's end
            day_end = datetime.fromisoformat(s).replace(tzinfo=timezone.utc) + timedelta(days=1, seconds=-1)
            return min(day_end, end)
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
        return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)
    except (ValueError, OverflowError):   # OverflowError: a time past year 9999 once in UTC
        return None


def parse_headlines(text: str, end: datetime, provider: str = "perplexity",
                    drops: Counter | None = None) -> list[Headline]:
    """Model answer -> Headlines (``source`` = ``perplexity/<publisher>``), malformed items dropped.

    ``end`` (UTC) bounds bare dates (``2024-05-01`` -> ``min(2024-05-01T23:59:59Z, end)``).
    ``drops`` (optional) counts what was dropped and why: ``no_headlines`` (a non-empty answer with no
    headline object in it), ``not_an_object``, ``no_title``, ``bad_time``, ``error``. Never raises."""
    out: list[Headline] = []
    drops = Counter() if drops is None else drops
    try:
        items, others = _extract(text)
    except Exception:  # defensive: the parser must never take the agent down
        drops["error"] += 1
        return out
    if others:
        drops["not_an_object"] += others
    if not items and isinstance(text, str) and text.strip() not in ("", "[]", "{}"):
        drops["no_headlines"] += 1
    for it in items:
        try:
            title = it.get("title")
            if not isinstance(title, str) or not title.strip():
                drops["no_title"] += 1
                continue
            title = " ".join(title.split())
            published = _parse_time(it.get("published_at"), end)
            if published is None:
                drops["bad_time"] += 1
                continue
            pub = it.get("source")
            pub = " ".join(pub.split()) if isinstance(pub, str) else ""
            source = f"{provider}/{pub}" if pub else provider
            url = it.get("url") if isinstance(it.get("url"), str) else ""
            out.append(Headline(id=headline_id(source, title, published), published_at=published,
                                source=source, title=title, url=url.strip()))
        except Exception:
            drops["error"] += 1
            continue
    return out


def recency_filter(window: timedelta) -> str:
    if window <= timedelta(hours=1):
        return "hour"
    if window <= timedelta(days=1):
        return "day"
    if window <= timedelta(days=7):
        return "week"
    return "month"


def build_prompt(symbol: str, start: datetime, end: datetime, max_items: int) -> list[dict[str, str]]:
    name, base = display_name(symbol), base_of(symbol)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return [
        {"role": "system", "content": "You are a financial news wire. Answer with JSON only, no prose."},
        {"role": "user", "content": (
            f"List up to {max_items} news headlines about {name} ({base}) cryptocurrency published between "
            f"{start.astimezone(timezone.utc).strftime(fmt)} and {end.astimezone(timezone.utc).strftime(fmt)}. "
            "Answer with only a JSON array of objects with the keys title, source (the publisher), url and "
            "published_at (ISO 8601 UTC). Use the headlines as published; do not invent any.")},
    ]


# --------------------------------------------------------------------------- client

class PerplexityNews:
    """:class:`tracer.news.source.HeadlineSource` over Perplexity with a :class:`KeyRing`."""
    name = "perplexity"

    def __init__(self, ring: KeyRing, base_url: str | None = None, model: str = "sonar", timeout_s: float = 20.0,
                 max_items: int = 10, max_wait_s: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 session: requests.Session | None = None, logger: logging.Logger | None = None) -> None:
        self.ring = ring
        self.base_url = (base_url or PPLX_URL).rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.max_items = max_items
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self._session = session or requests.Session()
        self.log = logger or logging.getLogger("tracer.news")

    def __repr__(self) -> str:
        return f"PerplexityNews({self.base_url!r}, model={self.model!r}, {self.ring!r})"

    def fetch(self, symbols: Sequence[str], start: datetime, end: datetime) -> list[Headline]:
        out: list[Headline] = []
        for sym in symbols:
            got = self.fetch_one(sym, start, end)
            if got is None:  # no usable key for now: the other symbols would fail the same way
                break
            out.extend(got)
        return out

    def fetch_one(self, symbol: str, start: datetime, end: datetime) -> list[Headline] | None:
        """Headlines about one asset; ``[]`` on a provider problem, None when no key is usable."""
        payload = {"model": self.model, "messages": build_prompt(symbol, start, end, self.max_items),
                   "temperature": 0, "search_recency_filter": recency_filter(end - start)}
        tries = 2 * max(len(self.ring), 1) + 1
        for _ in range(tries):
            try:
                key = self.ring.current()
            except NoKeyAvailable as e:
                if e.wait_s <= self.max_wait_s:
                    self.log.info(kv("news_key_wait", source=self.name, wait_s=round(e.wait_s, 3)))
                    self.sleep(max(0.0, e.wait_s))
                    continue
                self.log.warning(kv("news_no_key", source=self.name, wait_s=round(e.wait_s)))
                return None
            except ValueError:
                self.log.warning(kv("news_no_key", source=self.name, reason="no key configured"))
                return None
            try:
                resp = self._session.post(f"{self.base_url}/chat/completions", json=payload, timeout=self.timeout_s,
                                          headers={"Authorization": f"Bearer {key}", "Accept": "application/json"})
            except requests.RequestException as e:
                self.log.warning(kv("news_failed", source=self.name, symbol=symbol, error=type(e).__name__))
                return []
            status = resp.status_code
            if status == 200:
                self.ring.report_success(key)
                try:
                    body = resp.json()
                    text = body["choices"][0]["message"]["content"]
                except (ValueError, KeyError, IndexError, TypeError):
                    self.log.warning(kv("news_failed", source=self.name, symbol=symbol, error="malformed body"))
                    return []
                drops: Counter = Counter()
                got = parse_headlines(text, end, drops=drops)
                if drops:
                    self.log.warning(kv("news_items_dropped", source=self.name, symbol=symbol, kept=len(got),
                                        dropped=sum(drops.values()),
                                        reasons=",".join(f"{k}:{v}" for k, v in sorted(drops.items()))))
                return got
            if status in (401, 403, 429) or status >= 500:
                ra = parse_retry_after(resp.headers.get("Retry-After"), self.ring.clock()) if status == 429 else None
                cool = self.ring.report_failure(key, status, retry_after=ra, error=f"http {status}")
                self.log.warning(kv("news_key_failed", source=self.name, key_id=key_id(key), status=status,
                                    cooldown_s=round(cool, 3)))
                continue
            self.log.warning(kv("news_failed", source=self.name, symbol=symbol, status=status))
            return []
        self.log.warning(kv("news_failed", source=self.name, symbol=symbol, error="retries exhausted"))
        return []
