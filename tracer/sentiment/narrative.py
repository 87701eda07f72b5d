"""Narrative score: the recency-weighted, outlier-trimmed mean sentiment of a symbol's headlines.

Pure functions, no I/O. Formula, for the scored headlines i = 1..n known at time ``now``::

    age_i    = (now - published_at_i) in minutes          (age_i < 0 -> ValueError: look-ahead)
    w_i      = 0.5 ** (age_i / halflife_min)               (1 when fresh, 1/2 after one half-life)
    M        = the headlines left after MAD outlier removal: with m = median(v) and
               MAD = median(|v - m|), drop i when |v_i - m| > 3 * 1.4826 * MAD
               (only when n >= 5 and MAD > 0; otherwise M = all; at least half always stay)
    K        = the headlines of M left after dropping the floor(trim * |M|) lowest and the
               floor(trim * |M|) highest values (only when |M| >= 5; otherwise K = M)
    score    = sum_{i in K} w_i * v_i / sum_{i in K} w_i   (0.0 when K is empty or sum w = 0)
    dispersion = sqrt(sum_{i in K} w_i * (v_i - score)^2 / sum_{i in K} w_i)   (weighted std; 0.0 if none)

i.e. score = trimmed weighted mean, after MAD outlier removal, of the values v_i with weights
0.5 ** (age_min / halflife). 1.4826 * MAD estimates the standard deviation of normal data.
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
    dispersion: float = 0.0        # weighted std of the kept values (after outliers and trimming)


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


MAD_K = 3.0
MAD_NORMAL = 1.4826     # 1 / Phi^-1(3/4): MAD * 1.4826 estimates sigma for normal data


def mad_keep(values: np.ndarray, k: float = MAD_K) -> np.ndarray:
    """Boolean mask of values kept by MAD outlier removal: |v - median| <= k * 1.4826 * MAD.

    Everything is kept when n < 5 or MAD == 0 (e.g. most values equal).
    """
    v = np.asarray(values, dtype=float)
    keep = np.ones(v.size, dtype=bool)
    if v.size < 5:
        return keep
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med)))
    if mad <= 0.0:
        return keep
    return np.abs(v - med) <= k * MAD_NORMAL * mad


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
    mean, total, _ = _trimmed_stats(v, w, trim)
    return mean, total


def _trimmed_stats(v: np.ndarray, w: np.ndarray, trim: float) -> tuple[float, float, float]:
    """(trimmed weighted mean, sum of kept weights, weighted std of the kept values)."""
    if v.size == 0:
        return 0.0, 0.0, 0.0
    keep = _trim_keep(v, w, trim)
    kw = w[keep]
    total = float(kw.sum())
    if total <= 0.0:
        return 0.0, total, 0.0
    p = kw / total
    mean = float(np.dot(p, v[keep]))
    std = math.sqrt(max(0.0, float(np.dot(p, (v[keep] - mean) ** 2))))
    return mean, total, std


def trimmed_weighted_mean(values: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray,
                          trim: float = 0.1) -> float:
    """Weighted mean after dropping the floor(trim*n) lowest and highest values (when n >= 5).

    0.0 for no input or zero total kept weight.
    """
    v, w = _validate(values, weights, trim)
    return _trimmed(v, w, trim)[0]


def narrative_score(scored: Sequence[ScoredHeadline], now: datetime, halflife_min: float = 90.0,
                    trim: float = 0.1) -> NarrativeResult:
    """score = trimmed weighted mean, after MAD outlier removal, of the values v_i with weights
    w_i = 0.5 ** (age_min_i / halflife); dispersion = weighted std of the values kept.

    ``age_min_i = (now - published_at_i)`` in minutes; a headline published after ``now`` raises
    ValueError (look-ahead). See the module docstring for the outlier and trimming rules.
    """
    if not scored:
        return NarrativeResult(score=0.0, count=0, effective_weight=0.0, scorer_id="", latest_age_min=None)
    ages = np.array([(now - s.headline.published_at).total_seconds() / 60.0 for s in scored], dtype=float)
    values = np.array([s.score.value for s in scored], dtype=float)
    return narrative_from_arrays(values, ages, ",".join(sorted({s.score.scorer_id for s in scored})),
                                 halflife_min, trim)


def narrative_from_arrays(values: np.ndarray, ages_min: np.ndarray, scorer_id: str, halflife_min: float = 90.0,
                          trim: float = 0.1) -> NarrativeResult:
    """:func:`narrative_score` on plain arrays (sentiment values and ages in minutes); the backtest
    calls this directly with precomputed arrays."""
    if len(values) == 0:
        return NarrativeResult(score=0.0, count=0, effective_weight=0.0, scorer_id="", latest_age_min=None)
    ages = np.asarray(ages_min, dtype=float)
    values = np.asarray(values, dtype=float)
    if (np.abs(values) > 1.0 + _TOL).any() or not np.isfinite(values).all():
        raise ValueError("sentiment values must lie in [-1, 1]")
    weights = decay_weights(ages, halflife_min)
    v, w = _validate(values, weights, trim)
    inliers = mad_keep(v)
    mean, kept_weight, dispersion = _trimmed_stats(v[inliers], w[inliers], trim)
    return NarrativeResult(
        score=float(np.clip(mean, -1.0, 1.0)),
        count=len(values),
        effective_weight=kept_weight,
        scorer_id=scorer_id,
        latest_age_min=float(ages.min()),
        dispersion=dispersion,
    )
