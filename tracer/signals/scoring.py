"""The decision arithmetic over arrays: one implementation for one bar (live) and for every bar (backtest).

Every function takes numpy arrays (or scalars, which broadcast) of equal length and returns arrays.
The scalar helpers in ``price``, ``divergence``, ``quality``, ``regime``, ``conviction`` and ``gates``
delegate here, and :func:`tracer.signals.evaluate.decide` runs :func:`score_table` on one-element
arrays, so the live agents and the backtest share this code exactly. Labels are small integer codes
(indices into the ``*_LABELS`` tuples).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:      # evaluate imports this module; the parameters' type is needed by the checker only
    from tracer.signals.evaluate import EvalParams

ArrayLike = npt.ArrayLike       # a scalar or an array: every input broadcasts
Array = npt.NDArray[Any]

TREND_LABELS = ("strong_bear", "bear", "sideways", "bull", "strong_bull")
VOL_LABELS = ("low", "normal", "high", "extreme")
VOLUME_LABELS = ("low", "normal", "high")
BULL, STRONG = 0.15, 0.5                  # trend label boundaries on the combined trend score
VOL_BANDS = (0.35, 0.80, 1.30)            # annualised volatility bands
VOLUME_BANDS = (0.8, 1.25)                # participation bands
_ALIGN_LONG = np.array([0.0, 0.2, 0.5, 0.8, 1.0])   # by trend code
_VOL_SCORE = np.array([0.7, 1.0, 0.6, 0.2])          # by volatility code
PRICE_WEIGHT, NARRATIVE_WEIGHT = 0.6, 0.4
SIZE_FLOOR = 0.2
TREND_SCALE = 0.10      # a close 10% above its higher-timeframe mean reads as a strong up-trend (tanh(1) = 0.76)
EXTREME = VOL_LABELS.index("extreme")


def _f(x: ArrayLike) -> Array:
    return np.asarray(x, dtype=float)


# --- price, divergence ------------------------------------------------------------------------
def volume_damping(vz: ArrayLike) -> Array:
    """``clip(1 + 0.25 * min(volume_z, 0), 0.5, 1)``; 1 for a non-finite volume z."""
    v = _f(vz)
    return np.where(np.isfinite(v), np.clip(1.0 + 0.25 * np.minimum(np.nan_to_num(v), 0.0), 0.5, 1.0), 1.0)


def price_score(rsi: ArrayLike, macd_hist_z: ArrayLike, ema_spread_z: ArrayLike, vz: ArrayLike) -> tuple[Array, Array, Array]:
    """``(clip(raw * damping, -1, 1), rsi_component, damping)`` with
    ``raw = 0.30 * (RSI - 50)/50 + 0.35 * tanh(z_macd / 2) + 0.35 * tanh(z_spread / 2)``."""
    rc = (_f(rsi) - 50.0) / 50.0
    raw = 0.30 * rc + 0.35 * np.tanh(_f(macd_hist_z) / 2.0) + 0.35 * np.tanh(_f(ema_spread_z) / 2.0)
    damp = volume_damping(vz)
    return np.clip(raw * damp, -1.0, 1.0), rc, damp


def divergence_trigger(base: float, vz: ArrayLike) -> Array:
    """``base * clip(1 - 0.15 * volume_z, 0.6, 1.4)`` (volume z of 0 when not finite)."""
    v = _f(vz)
    v = np.where(np.isfinite(v), v, 0.0)
    return base * np.clip(1.0 - 0.15 * v, 0.6, 1.4)


def trend_price_score(gap: ArrayLike) -> Array:
    """The price score of the trend model: ``tanh(trend_gap / TREND_SCALE)`` with ``trend_gap`` the log
    distance of the close from its higher-timeframe mean (:func:`tracer.signals.features.trend_gap`)."""
    return np.tanh(np.nan_to_num(_f(gap)) / TREND_SCALE)


# --- quality ---------------------------------------------------------------------------------
def quality_points(narrative: ArrayLike, count: ArrayLike, price: ArrayLike, vz: ArrayLike, rsi: ArrayLike, diverged: ArrayLike) -> dict[str, Array]:
    """Signal-quality points (see :func:`tracer.signals.quality.signal_quality`)."""
    nar, pr, r = _f(narrative), _f(price), _f(rsi)
    has = np.asarray(count) > 0
    v = _f(vz)
    sent = np.where(has, 3.0 * np.minimum(np.abs(nar), 1.0), 0.0)
    mom = 3.0 * np.minimum(np.abs(pr), 1.0)
    vol = np.where(np.isfinite(v), np.clip(np.nan_to_num(v), 0.0, 2.0), 0.0)
    ext = np.where((r < 20) | (r > 80), 1.5, np.where((r < 30) | (r > 70), 1.0, 0.0))
    aligned = np.where(has & (np.abs(nar) >= 0.1) & (np.abs(pr) >= 0.1) & ((nar > 0) == (pr > 0)), 1.0, 0.0)
    contrarian = np.where(np.asarray(diverged) & (((nar > 0) & (r < 30)) | ((nar < 0) & (r > 70))), 1.0, 0.0)
    total = np.round(np.minimum(10.0, sent + mom + vol + ext + aligned + contrarian), 10)
    return {"total": total, "sentiment": sent, "momentum": mom, "volume": vol, "rsi_extreme": ext,
            "aligned": aligned, "contrarian": contrarian}


# --- regime ----------------------------------------------------------------------------------
def trend_code(score: ArrayLike) -> Array:
    s = _f(score)
    return np.select([s >= STRONG, s >= BULL, s <= -STRONG, s <= -BULL], [4, 3, 0, 1], 2)


def vol_code(annual_vol: ArrayLike) -> Array:
    a = _f(annual_vol)
    lo, mid, hi = VOL_BANDS
    return np.select([a < lo, a < mid, a < hi], [0, 1, 2], 3)


def volume_code(participation: ArrayLike) -> Array:
    p = _f(participation)
    return np.select([p < VOLUME_BANDS[0], p > VOLUME_BANDS[1]], [0, 2], 1)


def combined_trend(horizons: ArrayLike) -> tuple[Array, Array]:
    """(mean of the available horizon scores (0 if none), how many are available); ``horizons`` is
    n x k with NaN where a horizon lacks history."""
    h = np.atleast_2d(_f(horizons))
    ok = np.isfinite(h)
    n = ok.sum(axis=1)
    total = np.where(ok, h, 0.0).sum(axis=1)
    return np.where(n > 0, total / np.maximum(n, 1), 0.0), n


def regime_confidence(horizons: ArrayLike, combined: ArrayLike, vcode: ArrayLike) -> Array:
    """``0.5 * agreement + 0.5 * margin`` (x0.75 in extreme volatility), clipped to [0, 1]:
    agreement = |mean(sign(horizon scores))|, margin = distance of the combined score from the nearest
    label boundary (+-0.15, +-0.5) / 0.15, clipped to [0, 1]."""
    h = np.atleast_2d(_f(horizons))
    ok = np.isfinite(h)
    n = ok.sum(axis=1)
    signs = np.where(ok, np.sign(np.where(ok, h, 0.0)), 0.0).sum(axis=1)
    agreement = np.where(n > 0, np.abs(signs / np.maximum(n, 1)), 0.0)
    c = _f(combined)
    # the distance to the nearest of the four boundaries (np.minimum pairwise: the same values as a min over
    # a stacked axis, without building it)
    dist = np.minimum(np.minimum(np.abs(c + STRONG), np.abs(c + BULL)), np.minimum(np.abs(c - BULL), np.abs(c - STRONG)))
    margin = np.clip(dist / BULL, 0.0, 1.0)
    conf = 0.5 * agreement + 0.5 * margin
    conf = np.where(np.asarray(vcode) == EXTREME, conf * 0.75, conf)
    return np.asarray(np.clip(conf, 0.0, 1.0))


# --- direction, conviction, gates, size --------------------------------------------------------
def direction(price: ArrayLike, narrative: ArrayLike, count: ArrayLike, min_score: float) -> tuple[Array, Array]:
    """``composite = 0.6 * price + 0.4 * narrative`` (price alone without a relevant headline);
    direction = sign(composite) when ``|composite| >= min_score`` else 0."""
    pr, nar = _f(price), _f(narrative)
    comp = np.where(np.asarray(count) > 0, PRICE_WEIGHT * pr + NARRATIVE_WEIGHT * nar, pr)
    d = np.where(np.abs(comp) < min_score, 0, np.where(comp > 0, 1, -1))
    return d, comp


def alignment(direction_: ArrayLike, tcode: ArrayLike, confidence: ArrayLike) -> Array:
    """Raw support of the regime for the direction (strong_bull 1.0 ... strong_bear 0.0 for a long,
    mirrored for a short, 0.5 with none), pulled toward 0.5 by low confidence."""
    raw = _ALIGN_LONG[np.asarray(tcode)]
    d = np.asarray(direction_)
    raw = np.where(d < 0, 1.0 - raw, np.where(d == 0, 0.5, raw))
    return 0.5 + (raw - 0.5) * _f(confidence)


def volatility_score(vcode: ArrayLike) -> Array:
    return np.asarray(_VOL_SCORE[np.asarray(vcode)])


def confirmation(vz: ArrayLike, narrative: ArrayLike, price: ArrayLike, count: ArrayLike) -> Array:
    """0.5 for volume_z > 0 + 0.5 when news and price agree in sign."""
    v = _f(vz)
    vol = np.where(np.isfinite(v) & (np.nan_to_num(v) > 0), 0.5, 0.0)
    agree = np.where((np.asarray(count) > 0) & (_f(narrative) * _f(price) > 0), 0.5, 0.0)
    return vol + agree


def conviction(quality: ArrayLike, direction_: ArrayLike, tcode: ArrayLike, confidence: ArrayLike, vcode: ArrayLike, vz: ArrayLike, narrative: ArrayLike, price: ArrayLike, count: ArrayLike) -> dict[str, Array]:
    """``clip(4 * quality/10 + 3 * alignment + 2 * volatility_score + 1 * confirmation, 1, 10)``."""
    q = 4.0 * _f(quality) / 10.0
    a = alignment(direction_, tcode, confidence)
    v = volatility_score(vcode)
    c = confirmation(vz, narrative, price, count)
    return {"total": np.clip(q + 3.0 * a + 2.0 * v + 1.0 * c, 1.0, 10.0), "quality": q, "alignment": a,
            "volatility": v, "confirmation": c}


def adverse(direction_: ArrayLike, tcode: ArrayLike) -> Array:
    """A long in bear/strong_bear, or a short in bull/strong_bull."""
    d, t = np.asarray(direction_), np.asarray(tcode)
    return ((d > 0) & (t <= 1)) | ((d < 0) & (t >= 3))


def gates(quality: ArrayLike, conviction_: ArrayLike, direction_: ArrayLike, tcode: ArrayLike, vcode: ArrayLike, min_quality: float, min_conviction: float, adverse_penalty: float, extreme_penalty: float) -> dict[str, Array]:
    """required quality = min + adverse penalty (regime opposes the direction) + extreme-volatility
    penalty; fails: no direction, quality below required, conviction below its minimum."""
    req = min_quality + adverse_penalty * adverse(direction_, tcode) + extreme_penalty * (np.asarray(vcode) == EXTREME)
    no_dir = np.asarray(direction_) == 0
    low_q = _f(quality) < req
    low_c = _f(conviction_) < min_conviction
    return {"passed": ~(no_dir | low_q | low_c), "required_quality": _f(req), "no_direction": no_dir,
            "quality": low_q, "conviction": low_c}


def market_blocked(direction_: ArrayLike, market_gap: ArrayLike, on: bool) -> Array:
    """True where the market filter refuses a new entry in ``direction_``: a long needs the market above its
    mean (gap > 0), a short below it (gap < 0); an unknown market (NaN: its bar missing or too little history)
    refuses both. All False when the filter is off or there is no direction."""
    d = np.asarray(direction_)
    if not on:
        return np.zeros(d.shape, dtype=bool)
    g = np.broadcast_to(_f(market_gap), d.shape)
    return np.where(d > 0, ~(g > 0), np.where(d < 0, ~(g < 0), False))


def market_side(market_gap: ArrayLike, on: bool, band: float, shape: tuple[int, ...]) -> Array:
    """The market filter's exit side (TB_MARKET_EXIT reads it): +1 where the market symbol's trend score
    (:func:`trend_price_score` of its gap) is at least ``band`` (TB_MIN_DIRECTION_SCORE) above its mean, -1 at
    least that far below, 0 inside the band (a held position is kept: the same hysteresis as the coin's own
    direction, so an hourly close that wavers around the mean does not exit and re-enter every coin), where
    the market is unknown (NaN), or when the filter is off."""
    if not on:
        return np.zeros(shape, dtype=np.int64)
    g = np.broadcast_to(_f(market_gap), shape)
    score = np.where(np.isnan(g), 0.0, trend_price_score(g))
    return np.where(score >= band, 1, np.where(score <= -band, -1, 0)).astype(np.int64)


def strength_counts(gaps: ArrayLike) -> tuple[Array, Array]:
    """The relative-strength filter's cross-section (TB_STRENGTH_TOP_K): ``gaps`` is a (bars, symbols) table of the
    symbols' trend gaps at the same bar (NaN: not evaluated there, or too short a history). Per cell: how many of
    the other symbols of its row have a strictly higher gap (stronger) and a strictly lower one (weaker); NaN for
    a NaN cell (unknown: the filter then refuses the entry)."""
    g = np.atleast_2d(_f(gaps))
    known = ~np.isnan(g)
    gi, gj = g[:, :, None], g[:, None, :]          # a cell against every other symbol of its row
    both = known[:, :, None] & known[:, None, :]
    stronger = np.where(known, (both & (gj > gi)).sum(axis=2), np.nan)
    weaker = np.where(known, (both & (gj < gi)).sum(axis=2), np.nan)
    return stronger, weaker


def size_fraction(conviction_: ArrayLike, min_conviction: float, confidence_sizing: bool) -> Array:
    """``0.2 + 0.8 * clip((conviction - min) / (10 - min), 0, 1)`` with confidence sizing, else 1."""
    c = _f(conviction_)
    if not confidence_sizing:
        return np.ones_like(c)
    span = max(10.0 - min_conviction, 1e-9)
    return SIZE_FLOOR + (1.0 - SIZE_FLOOR) * np.clip((c - min_conviction) / span, 0.0, 1.0)


@dataclass
class ScoreTable:
    """Every score and the decision for n bars (arrays of length n)."""
    price: Array
    rsi_component: Array
    damping: Array
    divergence: Array
    trigger: Array
    quality: dict[str, Array]
    trend_score: Array
    trend_code: Array
    vol_code: Array
    volume_code: Array
    confidence: Array
    direction: Array
    composite: Array
    conviction: dict[str, Array]
    gates: dict[str, Array]
    action: Array             # +1 buy, -1 sell, 0 hold
    size_fraction: Array
    market_side: Array        # +1 the market symbol above its mean by the band, -1 below, 0 inside, unknown, off
    stronger: Array           # symbols with a higher trend gap at the same bar (:func:`strength_counts`; NaN unknown)
    weaker: Array             # symbols with a lower one


@dataclass(frozen=True)
class RegimeColumns:
    """The regime of n bars, a function of their feature table alone (a backtest over a prepared history
    computes it once per table, :func:`score_table` otherwise)."""
    trend_score: Array
    trend_code: Array
    vol_code: Array
    volume_code: Array
    confidence: Array


def regime_columns(horizons: ArrayLike, annual_vol: ArrayLike, participation: ArrayLike) -> RegimeColumns:
    """The combined trend, its label, the volatility and volume bands and the regime's confidence."""
    combined, _ = combined_trend(horizons)
    vc = vol_code(annual_vol)
    return RegimeColumns(combined, trend_code(combined), vc, volume_code(participation),
                         regime_confidence(horizons, combined, vc))


_SCORER_WEIGHT = (("finbert", 1.0), ("tfidf", 0.9), ("vader", 0.7))


def scorer_weight(scorer_id: str) -> float:
    """How far a scorer's reading is trusted: FinBERT 1.0, the trained model 0.9, the lexicon 0.7
    (several scorers: the weakest); 0 without a scorer."""
    if not scorer_id:
        return 0.0
    ws = [next((w for prefix, w in _SCORER_WEIGHT if part.strip().lower().startswith(prefix)), 0.7)
          for part in scorer_id.split(",")]
    return min(ws)


def narrative_confidence(count: ArrayLike, dispersion: ArrayLike, weight: ArrayLike) -> Array:
    """Confidence in the narrative, in [0, 1]: ``min(1, count / 3) * (1 - 0.5 * min(dispersion, 1)) * weight``
    (more headlines, more agreement between them and a better scorer mean more confidence)."""
    c = np.asarray(count, dtype=float)
    return np.clip(np.minimum(1.0, c / 3.0) * (1.0 - 0.5 * np.minimum(_f(dispersion), 1.0)) * _f(weight), 0.0, 1.0)


def score_table(rsi: ArrayLike, macd_hist_z: ArrayLike, ema_spread_z: ArrayLike, vz: ArrayLike, horizons: ArrayLike, annual_vol: ArrayLike, participation: ArrayLike, narrative: ArrayLike, count: ArrayLike, p: EvalParams, nar_confidence: ArrayLike = 1.0, trend_gap: ArrayLike = 0.0, market_gap: ArrayLike = np.nan, regime: RegimeColumns | None = None, strength: tuple[ArrayLike, ArrayLike] = (np.nan, np.nan)) -> ScoreTable:
    """All scores and the decision, vectorised. ``p`` is an :class:`~tracer.signals.evaluate.EvalParams`.

    The narrative enters every score scaled by its confidence (:func:`narrative_confidence`). With a trend
    window (``p.trend_bars > 0``) the price score is the higher-timeframe trend (:func:`trend_price_score`)
    instead of the hourly oscillators, so ``min_direction_score`` is the band around the mean inside which
    no direction is called (a held position is kept: hysteresis).

    With a market filter (``p.market_bars > 0``) ``market_gap`` is the market symbol's :func:`trend_gap` at the
    same bar (NaN: unknown); ``gates["market"]`` marks a direction the market opposes (a long while the market
    is not above its mean, a short while it is not below, any direction while unknown): no new entry then. The
    action is left as it is, because an opposite action is also how a held position exits. ``regime``: the
    :func:`regime_columns` of ``horizons``, ``annual_vol`` and ``participation`` when already computed.
    ``strength``: the (stronger, weaker) counts of :func:`strength_counts` at each bar, carried to the signal (the
    policies apply their own TB_STRENGTH_TOP_K to them)."""
    price, rc, damp = price_score(rsi, macd_hist_z, ema_spread_z, vz)
    if p.trend_bars > 0:
        price = trend_price_score(np.broadcast_to(_f(trend_gap), np.shape(price)))
    count = np.asarray(count)
    narrative = np.where(count > 0, _f(narrative) * _f(nar_confidence), 0.0)
    nar = narrative
    div = nar - price
    trig = divergence_trigger(p.divergence_threshold, vz)
    diverged = (count > 0) & (np.abs(div) >= trig)
    q = quality_points(narrative, count, price, vz, rsi, diverged)
    r = regime if regime is not None else regime_columns(horizons, annual_vol, participation)
    combined, tc, vc, uc, conf = r.trend_score, r.trend_code, r.vol_code, r.volume_code, r.confidence
    d, comp = direction(price, narrative, count, p.min_direction_score)
    conv = conviction(q["total"], d, tc, conf, vc, vz, narrative, price, count)
    g = p.gates
    gt = gates(q["total"], conv["total"], d, tc, vc, g.min_quality, g.min_conviction, g.adverse_regime_penalty,
               g.extreme_vol_penalty)
    gt["market"] = market_blocked(d, market_gap, p.market_bars > 0)
    action = np.where(gt["passed"], d, 0)
    frac = np.where(gt["passed"], size_fraction(conv["total"], g.min_conviction, g.confidence_sizing), 0.0)
    side = market_side(market_gap, p.market_bars > 0, max(p.min_direction_score, 1e-12), np.shape(d))
    shape = np.shape(d)
    return ScoreTable(price, rc, damp, div, trig, q, combined, tc, vc, uc, conf, d, comp, conv, gt, action, frac,
                      side, np.broadcast_to(_f(strength[0]), shape), np.broadcast_to(_f(strength[1]), shape))
