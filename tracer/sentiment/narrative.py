"""Narrative score: the recency-weighted, outlier-trimmed mean sentiment of a symbol's headlines.

Pure functions, no I/O. Formula, for the scored headlines i = 1..n known at time ``now``::

    age_i    = (now - published_at_i) in minutes          (age_i < 0 -> ValueError: look-ahead)
    w_i      = 0.5 ** (age_i / halflife_min)               (1 when fresh, 1/2 after one half-life)
    K        = the headlines left after dropping the floor(trim * n) lowest and the
               floor(trim * n) highest values (only when n >= 5; otherwise K = all)
    score    = sum_{i in K} w_i * v_i / sum_{i in K} w_i   (0.0 when K is empty or sum w = 0)

i.e. score = trimmed weighted mean of the values v_i with weights 0.5 ** (age_min / halflife).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Sequence

import numpy as np

from tracer.models import Headline, ScoredHeadline
from tracer.symbols import is_relevant

_TOL = 1e-9


@dataclass(frozen=True, slots=True)
class NarrativeResult:
    score: float                   # in [-1, 1]; 0.0 when there is nothing to average
    count: int                     # headlines considered (before trimming)
    effective_weight: float        # sum of the decay weights of the headlines kept after trimming
    scorer_id: str                 # sorted unique scorer ids joined by ","; "" if no headlines
    latest_age_min: float | None   # age of the newest headline in minutes; None if no headlines


def relevant(symbol: str, headlines: Iterable[Headline]) -> list[Headline]:
    """Headlines whose title names ``symbol`` (whole words; see :func:`tracer.symbols.is_relevant`)."""
    return [h for h in headlines if is_relevant(symbol, h.title)]


def decay_weights(ages_minutes: np.ndarray, halflife_min: float) -> np.ndarray:
    """``0.5 ** (age / halflife)``. A negative age (a headline from the future) raises ValueError."""
    if not (halflife_min > 0 and math.isfinite(halflife_min)):
        raise ValueError(f"halflife_min must be a positive finite number, got {halflife_min}")
    ages = np.asarray(ages_minutes, dtype=float)
    if np.isnan(ages).any():
        raise ValueError("ages contain NaN")
    if (ages < 0).any():
        raise ValueError(f"negative age {ages.min():.3f} min: a headline from the future is look-ahead")
    return np.power(0.5, ages / halflife_min)


def _trim_keep(values: np.ndarray, weights: np.ndarray, trim: float) -> np.ndarray:
    """Indices kept after dropping floor(trim*n) from each end by value (n >= 5 only).

    Ties in value are ordered by weight, so the result does not depend on input order.
    """
    n = values.size
    order = np.lexsort((weights, values))       # primary key: value, then weight
    k = math.floor(trim * n) if n >= 5 else 0
    return order[k:n - k]


def _validate(values: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray,
              trim: float) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=float).ravel()
    w = np.asarray(weights, dtype=float).ravel()
    if v.shape != w.shape:
        raise ValueError(f"values and weights differ in length: {v.size} vs {w.size}")
    if not (0.0 <= trim < 0.5):
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    if not np.isfinite(v).all():
        raise ValueError("values must be finite")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and >= 0")
    return v, w


def _trimmed(v: np.ndarray, w: np.ndarray, trim: float) -> tuple[float, float]:
    """(trimmed weighted mean, sum of kept weights)."""
    if v.size == 0:
        return 0.0, 0.0
    keep = _trim_keep(v, w, trim)
    kw = w[keep]
    total = float(kw.sum())
    if total <= 0.0:
        return 0.0, total
    return float(np.dot(kw / total, v[keep])), total


def trimmed_weighted_mean(values: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray,
                          trim: float = 0.1) -> float:
    """Weighted mean after dropping the floor(trim*n) lowest and highest values (when n >= 5).

    0.0 for no input or zero total kept weight.
    """
    v, w = _validate(values, weights, trim)
    return _trimmed(v, w, trim)[0]


def narrative_score(scored: Sequence[ScoredHeadline], now: datetime, halflife_min: float = 90.0,
                    trim: float = 0.1) -> NarrativeResult:
    """score = trimmed weighted mean of the values v_i with weights w_i = 0.5 ** (age_min_i / halflife).

    ``age_min_i = (now - published_at_i)`` in minutes; a headline published after ``now`` raises
    ValueError (look-ahead). See the module docstring for the trimming rule.
    """
    if not scored:
        return NarrativeResult(score=0.0, count=0, effective_weight=0.0, scorer_id="", latest_age_min=None)
    ages = np.array([(now - s.headline.published_at).total_seconds() / 60.0 for s in scored], dtype=float)
    values = np.array([s.score.value for s in scored], dtype=float)
    if (np.abs(values) > 1.0 + _TOL).any() or not np.isfinite(values).all():
        raise ValueError("sentiment values must lie in [-1, 1]")
    weights = decay_weights(ages, halflife_min)
    v, w = _validate(values, weights, trim)
    mean, kept_weight = _trimmed(v, w, trim)
    return NarrativeResult(
        score=float(np.clip(mean, -1.0, 1.0)),
        count=len(scored),
        effective_weight=kept_weight,
        scorer_id=",".join(sorted({s.score.scorer_id for s in scored})),
        latest_age_min=float(ages.min()),
    )
