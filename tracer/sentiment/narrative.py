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
from typing import Iterable, Mapping, Sequence

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
    return np.array(_mad_keep([float(x) for x in np.asarray(values, dtype=float).ravel()], k), dtype=bool)


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2.0


def _mad_keep(v: list[float], k: float = MAD_K) -> list[bool]:
    if len(v) < 5:
        return [True] * len(v)
    med = _median(sorted(v))
    dev = [abs(x - med) for x in v]
    mad = _median(sorted(dev))
    if mad <= 0.0:
        return [True] * len(v)
    limit = k * MAD_NORMAL * mad
    return [d <= limit for d in dev]


def _trimmed_py(v: list[float], w: list[float], trim: float) -> tuple[float, float, float]:
    """(trimmed weighted mean, sum of kept weights, weighted std of the kept values): drop floor(trim*n)
    values from each end by value (ties ordered by weight; only when n >= 5)."""
    n = len(v)
    if n == 0:
        return 0.0, 0.0, 0.0
    order = sorted(range(n), key=lambda i: (v[i], w[i]))
    k = math.floor(trim * n) if n >= 5 else 0
    kept = order[k:n - k]
    total = math.fsum(w[i] for i in kept)
    if total <= 0.0:
        return 0.0, total, 0.0
    mean = math.fsum(w[i] * v[i] for i in kept) / total
    var = math.fsum(w[i] * (v[i] - mean) ** 2 for i in kept) / total
    return mean, total, math.sqrt(max(0.0, var))


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
    return _trimmed_py([float(x) for x in v], [float(x) for x in w], trim)


def trimmed_weighted_mean(values: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray,
                          trim: float = 0.1) -> float:
    """Weighted mean after dropping the floor(trim*n) lowest and highest values (when n >= 5).

    0.0 for no input or zero total kept weight.
    """
    v, w = _validate(values, weights, trim)
    return _trimmed(v, w, trim)[0]


def narrative_score(scored: Sequence[ScoredHeadline], now: datetime, halflife_min: float = 90.0,
                    trim: float = 0.1, source_weights: Mapping[str, float] | None = None) -> NarrativeResult:
    """score = trimmed weighted mean, after MAD outlier removal, of the values v_i with weights
    w_i = 0.5 ** (age_min_i / halflife); dispersion = weighted std of the values kept.

    ``age_min_i = (now - published_at_i)`` in minutes; a headline published after ``now`` raises
    ValueError (look-ahead). See the module docstring for the outlier and trimming rules.
    """
    if not scored:
        return NarrativeResult(score=0.0, count=0, effective_weight=0.0, scorer_id="", latest_age_min=None)
    ages = np.array([(now - s.headline.published_at).total_seconds() / 60.0 for s in scored], dtype=float)
    values = np.array([s.score.value for s in scored], dtype=float)
    sw = None
    if source_weights:
        from tracer.news.dedupe import source_weight
        sw = [source_weight(s.headline.source, source_weights) for s in scored]
    return narrative_from_arrays(values, ages, ",".join(sorted({s.score.scorer_id for s in scored})),
                                 halflife_min, trim, sw)


def narrative_from_arrays(values: np.ndarray, ages_min: np.ndarray, scorer_id: str, halflife_min: float = 90.0,
                          trim: float = 0.1, source_w: Sequence[float] | None = None) -> NarrativeResult:
    """:func:`narrative_score` on plain arrays (sentiment values and ages in minutes); the backtest
    calls this directly with precomputed arrays. ``source_w`` multiplies each headline's decay weight
    (its source's weight, ``TB_NEWS_SOURCE_WEIGHTS``; 1 when not given)."""
    if len(values) == 0:
        return NarrativeResult(score=0.0, count=0, effective_weight=0.0, scorer_id="", latest_age_min=None)
    if not (halflife_min > 0 and math.isfinite(halflife_min)):
        raise ValueError(f"halflife_min must be a positive finite number, got {halflife_min}")
    if not (0.0 <= trim < 0.5):
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    v = [float(x) for x in values]
    ages = [float(a) for a in ages_min]
    if len(ages) != len(v):
        raise ValueError(f"values and ages differ in length: {len(v)} vs {len(ages)}")
    for x in v:
        if not (math.isfinite(x) and abs(x) <= 1.0 + _TOL):
            raise ValueError("sentiment values must lie in [-1, 1]")
    for a in ages:
        if a != a:
            raise ValueError("ages contain NaN")
        if a < 0:
            raise ValueError(f"negative age {a:.3f} min: a headline from the future is look-ahead")
    w = [0.5 ** (a / halflife_min) for a in ages]
    if source_w is not None:
        w = [x * max(0.0, float(sw)) for x, sw in zip(w, source_w)]
    keep = _mad_keep(v)
    mean, kept_weight, dispersion = _trimmed_py([x for x, kk in zip(v, keep) if kk],
                                                [x for x, kk in zip(w, keep) if kk], trim)
    return NarrativeResult(
        score=min(1.0, max(-1.0, mean)),
        count=len(v),
        effective_weight=kept_weight,
        scorer_id=scorer_id,
        latest_age_min=min(ages),
        dispersion=dispersion,
    )
