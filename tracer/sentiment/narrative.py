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
import operator
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping, Sequence

import numpy as np

from tracer.models import Headline, ScoredHeadline
from tracer.symbols import ASSETS, Asset, base_of, is_relevant

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


_NS_PER_MIN = 60 * 1_000_000_000
_EMPTY = NarrativeResult(score=0.0, count=0, effective_weight=0.0, scorer_id="", latest_age_min=None)


def narrative_series(now_ns: Sequence[int] | np.ndarray, published_ns: np.ndarray, values: Sequence[float],
                     scorer_ids: Sequence[str], lookback_ns: int, halflife_min: float = 90.0, trim: float = 0.1,
                     source_w: Sequence[float] | None = None) -> list[NarrativeResult]:
    """The narrative at every time of ``now_ns`` at once (the backtest): for each time ``now``,
    exactly ``narrative_from_arrays(values[lo:hi], now/min - published[lo:hi]/min, ids, ...)`` over the
    headlines published in ``(now - lookback, now]`` (``published_ns`` sorted, int ns), and the empty
    narrative where there is none.

    Bit-for-bit the per-time computation (the test compares them), only cheaper: the windows come
    from two vectorised ``searchsorted`` calls; what depends on the window's values alone (the MAD
    outlier mask, the trimming order, the joined scorer ids, the range check) is computed once per
    distinct window; per time only the decay weights and the three exact sums (``math.fsum``, so the
    summation order does not matter) remain. Trimming drops ``floor(trim * n)`` values from each end
    ordered by (value, weight): when no tie in value straddles a cut, the kept set does not depend on
    the weights and is taken from the window's value order; otherwise that time is sorted in full, as
    :func:`narrative_from_arrays` does.
    """
    t = np.asarray(published_ns, dtype=np.int64)
    now = np.asarray(now_ns, dtype=np.int64)
    out: list[NarrativeResult] = [_EMPTY] * len(now)
    if len(t) == 0 or len(now) == 0:
        return out
    his = np.searchsorted(t, now, side="right")
    los = np.searchsorted(t, now - int(lookback_ns), side="right")
    todo = np.flatnonzero(his > los)
    if len(todo) == 0:
        return out
    if not (halflife_min > 0 and math.isfinite(halflife_min)):
        raise ValueError(f"halflife_min must be a positive finite number, got {halflife_min}")
    if not (0.0 <= trim < 0.5):
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    minutes_arr = t / _NS_PER_MIN                 # as the per-time caller computes it
    minutes = minutes_arr.tolist()
    v_all = [float(x) for x in values]
    sw = None if source_w is None else [max(0.0, float(x)) for x in source_w]
    ids = list(scorer_ids)
    fsum, hl, mul, sqrt = math.fsum, halflife_min, operator.mul, math.sqrt
    key, win = None, None
    for j, lo, hi in zip(todo.tolist(), los[todo].tolist(), his[todo].tolist()):
        now_min = int(now[j]) / _NS_PER_MIN
        latest = now_min - minutes[hi - 1]        # ages fall with the index: the newest is the youngest
        if key != (lo, hi):                       # consecutive times mostly share their window
            key = (lo, hi)
            win = _window(v_all, minutes, sw, ids, lo, hi, trim)
        ok, sid, kept, k, sel, m_sel, v_sel, sw_sel = win
        if not ok or latest < 0 or latest != latest:
            # out of range values or look-ahead: the per-time function raises its own error
            out[j] = narrative_from_arrays(np.asarray(v_all[lo:hi]), now_min - minutes_arr[lo:hi], sid,
                                           halflife_min, trim, None if sw is None else sw[lo:hi])
            continue
        if sel is None:
            # a tie in value at a trimming cut: order by (value, weight) as _trimmed_py does
            ws = [0.5 ** ((now_min - minutes[i]) / hl) for i in kept]
            if sw is not None:
                ws = [x * sw[i] for x, i in zip(ws, kept)]
            mean, total, disp = _trimmed_py([v_all[i] for i in kept], ws, trim)
        else:
            ws = [0.5 ** ((now_min - m) / hl) for m in m_sel]
            if sw_sel is not None:
                ws = list(map(mul, ws, sw_sel))
            total = fsum(ws)
            if total <= 0.0:
                mean, disp = 0.0, 0.0
            else:
                mean = fsum(map(mul, ws, v_sel)) / total
                var = fsum([x * (y - mean) ** 2 for x, y in zip(ws, v_sel)]) / total
                disp = sqrt(max(0.0, var))
        out[j] = NarrativeResult(score=min(1.0, max(-1.0, mean)), count=hi - lo, effective_weight=total,
                                 scorer_id=sid, latest_age_min=latest, dispersion=disp)
    return out


def _window(v_all: list[float], minutes: list[float], sw: list[float] | None, ids: list[str], lo: int, hi: int,
            trim: float) -> tuple:
    """What a window of headlines ``[lo, hi)`` fixes whatever the time: values in range?, the joined scorer
    ids, the indices kept by MAD, the trim count, and (when no tie in value straddles a trimming cut) the
    indices kept after trimming with their minutes, values and source weights (else None: the kept set
    then depends on the weights)."""
    vals = v_all[lo:hi]
    ok = all(math.isfinite(x) and abs(x) <= 1.0 + _TOL for x in vals)
    keep = _mad_keep(vals) if ok else []
    kept = [lo + i for i, kk in enumerate(keep) if kk]
    n = len(kept)
    k = math.floor(trim * n) if n >= 5 else 0
    sel: list[int] | None = kept
    if k:
        by_v = sorted(kept, key=v_all.__getitem__)
        vs = [v_all[i] for i in by_v]
        sel = by_v[k:n - k] if (vs[k - 1] < vs[k] and vs[n - k - 1] < vs[n - k]) else None
    sid = ",".join(sorted(set(ids[lo:hi])))
    if sel is None:
        return ok, sid, kept, k, None, None, None, None
    return (ok, sid, kept, k, sel, [minutes[i] for i in sel], [v_all[i] for i in sel],
            None if sw is None else [sw[i] for i in sel])


def _plain(text: str) -> bool:
    """No letter outside ASCII: case-insensitive matching of ASCII words is then plain lower-case matching
    (the letters Unicode folds onto ASCII ones, such as the Kelvin sign or the long s, are not ASCII)."""
    return text.isascii() or not any(c.isalpha() for c in text if ord(c) > 127)


def _needles(symbol: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """Substrings one of which a title must contain to name ``symbol``: its aliases in lower case (the
    title lower-cased) and its case-sensitive tickers; None when no such test is safe (a non-ASCII word, or
    a word with a space while exclusions are cut out of the title first: it could match across a cut)."""
    base = base_of(symbol)
    asset = ASSETS.get(base, Asset(base, base.lower(), (base.lower(),)))
    words = (*asset.aliases, *asset.upper_only)
    if not words or not all(w.isascii() and w for w in words):
        return None
    if asset.exclude and any(any(c.isspace() for c in w) for w in words):
        return None
    return tuple(a.lower() for a in asset.aliases), tuple(asset.upper_only)


def relevant_to(symbols: Sequence[str], headlines: Sequence[Headline]) -> dict[str, list[Headline]]:
    """``{symbol: relevant(symbol, headlines)}``, exactly, for many headlines at once (the backtest): a title
    goes through :func:`tracer.symbols.is_relevant` only when it contains one of the symbol's words as a
    plain substring (lower-cased for the case-insensitive aliases), which every match requires; titles with
    non-ASCII letters always go through it. About twice as fast as :func:`relevant` per symbol."""
    lows: list[str | None] | None = None
    out: dict[str, list[Headline]] = {}
    for sym in symbols:
        needles = _needles(sym)
        if needles is None:
            out[sym] = relevant(sym, headlines)
            continue
        if lows is None:
            lows = [h.title.lower() if _plain(h.title) else None for h in headlines]
        aliases, tickers = needles
        out[sym] = [h for h, low in zip(headlines, lows)
                    if (low is None or any(a in low for a in aliases) or any(t in h.title for t in tickers))
                    and is_relevant(sym, h.title)]
    return out
