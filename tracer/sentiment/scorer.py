"""The sentiment-scorer interface, and a cache that wraps any scorer.

Every scorer (VADER now; FinBERT and a trained offline classifier later) satisfies
:class:`SentimentScorer`: a stable ``scorer_id`` and a batch ``score()`` that returns one
:class:`~tracer.models.Score` per input text, in input order, with ``value`` in [-1, 1] and
``label`` one of ``positive`` / ``negative`` / ``neutral``.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol, Sequence, runtime_checkable

from tracer.models import Score

LABELS = ("positive", "negative", "neutral")


@runtime_checkable
class SentimentScorer(Protocol):
    """Scores texts. ``scorer_id`` names the model and version (it is stored with every score)."""

    scorer_id: str

    def score(self, texts: Sequence[str]) -> list[Score]:
        """One Score per text, same order; value in [-1, 1]; label positive/negative/neutral."""
        ...


class CachedScorer:
    """An in-memory LRU cache in front of any :class:`SentimentScorer`, keyed by text.

    A headline seen again in a later cycle is not scored again. At most ``maxsize`` texts are
    kept; the least recently used is evicted first. Texts missing from the cache are sent to
    the wrapped scorer in one batch (duplicates within a batch are scored once).
    ``hits`` / ``misses`` count look-ups, one per input text.
    """

    def __init__(self, inner: SentimentScorer, maxsize: int = 20_000) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.inner = inner
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._cache: OrderedDict[str, Score] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def scorer_id(self) -> str:
        return self.inner.scorer_id

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def score(self, texts: Sequence[str]) -> list[Score]:
        out: list[Score | None] = [None] * len(texts)
        pending: dict[str, list[int]] = {}          # text -> positions, insertion-ordered
        with self._lock:
            for i, text in enumerate(texts):
                cached = self._cache.get(text)
                if cached is not None:
                    self._cache.move_to_end(text)
                    self.hits += 1
                    out[i] = cached
                elif text in pending:                # duplicate within this batch
                    self.hits += 1
                    pending[text].append(i)
                else:
                    self.misses += 1
                    pending[text] = [i]
        if pending:
            todo = list(pending)
            fresh = self.inner.score(todo)
            if len(fresh) != len(todo):
                raise RuntimeError(
                    f"scorer {self.inner.scorer_id!r} returned {len(fresh)} scores for {len(todo)} texts")
            with self._lock:
                for text, sc in zip(todo, fresh):
                    for i in pending[text]:
                        out[i] = sc
                    self._cache[text] = sc
                    self._cache.move_to_end(text)
                while len(self._cache) > self.maxsize:
                    self._cache.popitem(last=False)
        return out  # type: ignore[return-value]  # every slot is filled above
