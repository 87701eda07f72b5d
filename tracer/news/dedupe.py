"""One story once: dedupe headlines by normalised title, across sources and across cycles.

``normalise_title``: Unicode NFKC, accents stripped, lower case, a trailing publisher
suffix (`` - Reuters``, `` | CoinDesk``) removed, every run of non-alphanumerics made
one space. Two headlines with the same normalised title are the same story.

:class:`HeadlineBook` keeps one headline per story for ``retention`` (default 48 h):
when a story arrives again (another source, or the same source in a later cycle), the
copy from the source with the higher weight is kept; on equal weight the earlier
publication (then the copy seen first) stays. Source weights come from
:func:`parse_weights` (``"alpaca=1.0,perplexity=0.7"``): a headline's weight is that of
its full ``source`` (``perplexity/Reuters``), else of its provider (text before ``/``),
else ``default``.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Mapping

from tracer.config import parse_weights  # noqa: F401  (the weights' parser lives with the configuration)
from tracer.models import Headline

__all__ = ["normalise_title", "story_key", "parse_weights", "source_weight", "dedupe", "HeadlineBook"]

_SUFFIX = re.compile(r"\s+[-|\u2013\u2014]\s+[^-|\u2013\u2014]{2,40}$")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalise_title(title: str) -> str:
    t = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", title))
    t = "".join(ch for ch in t if not unicodedata.combining(ch))
    stripped = _SUFFIX.sub("", t.strip())
    if len(_NON_ALNUM.sub("", stripped.lower())) >= 12:  # keep the suffix when little else is left
        t = stripped
    return _NON_ALNUM.sub(" ", t.lower()).strip()


def story_key(h: Headline) -> str:
    return normalise_title(h.title)


def source_weight(source: str, weights: Mapping[str, float], default: float = 1.0) -> float:
    s = source.lower()
    if s in weights:
        return weights[s]
    return weights.get(s.split("/", 1)[0], default)


def _better(new: Headline, old: Headline, weights: Mapping[str, float]) -> bool:
    wn, wo = source_weight(new.source, weights), source_weight(old.source, weights)
    if wn != wo:
        return wn > wo
    return new.published_at < old.published_at


def dedupe(headlines: Iterable[Headline], weights: Mapping[str, float] | None = None) -> list[Headline]:
    """Pure: one headline per story (rules above), oldest first."""
    best: dict[str, Headline] = {}
    w = weights or {}
    for h in headlines:
        k = story_key(h)
        if not k:
            continue
        old = best.get(k)
        if old is None or _better(h, old, w):
            best[k] = h
    return sorted(best.values(), key=lambda h: h.published_at)


@dataclass
class _Entry:
    headline: Headline
    first_seen: datetime


class HeadlineBook:
    """Stories seen so far (across cycles), one headline each."""

    def __init__(self, weights: Mapping[str, float] | None = None,
                 retention: timedelta = timedelta(hours=48)) -> None:
        self.weights = dict(weights or {})
        self.retention = retention
        self._stories: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._stories)

    def add(self, headlines: Iterable[Headline], now: datetime) -> int:
        """Merge ``headlines``; returns how many new stories were added. Stories published
        more than ``retention`` before ``now`` are forgotten."""
        added = 0
        for h in headlines:
            k = story_key(h)
            if not k:
                continue
            old = self._stories.get(k)
            if old is None:
                self._stories[k] = _Entry(h, now)
                added += 1
            elif _better(h, old.headline, self.weights):
                self._stories[k] = _Entry(h, old.first_seen)
        horizon = now - self.retention
        for k in [k for k, e in self._stories.items() if e.headline.published_at < horizon]:
            del self._stories[k]
        return added

    def window(self, start: datetime, end: datetime) -> list[Headline]:
        """Headlines with ``start < published_at <= end``, oldest first."""
        out = [e.headline for e in self._stories.values() if start < e.headline.published_at <= end]
        out.sort(key=lambda h: (h.published_at, h.id))
        return out
