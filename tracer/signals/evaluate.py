"""The one evaluation function. Both agents and the backtest call :func:`evaluate`.

Pure: bars, scored headlines, a time and parameters in; a :class:`~tracer.models.Signal`
with every input, score, label and the decision with its reason out. No I/O, no clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

import numpy as np
import pandas as pd

from tracer.models import Action, ScoredHeadline, Signal
from tracer.sentiment.narrative import narrative_score
from tracer.signals.conviction import conviction_score
from tracer.signals.divergence import divergence, divergence_trigger
from tracer.signals.gates import GateThresholds, check_gates, size_fraction
from tracer.signals.indicators import atr, volume_z
from tracer.signals.price import price_score
from tracer.signals.quality import signal_quality
from tracer.signals.regime import market_regime

PRICE_WEIGHT, NARRATIVE_WEIGHT = 0.6, 0.4


@dataclass(frozen=True, slots=True)
class EvalParams:
    """Everything :func:`evaluate` needs besides data. Built from Settings by the agents."""
    gates: GateThresholds
    interval: timedelta = timedelta(hours=1)
    halflife_min: float = 90.0
    sentiment_trim: float = 0.1
    volume_z_window: int = 20
    divergence_threshold: float = 0.5
    min_direction_score: float = 0.1

    @classmethod
    def from_settings(cls, s, interval: timedelta = timedelta(hours=1)) -> "EvalParams":
        return cls(gates=GateThresholds(min_quality=s.min_signal_quality, min_conviction=s.min_conviction_score,
                                        adverse_regime_penalty=s.bear_quality_penalty,
                                        extreme_vol_penalty=s.extreme_vol_quality_penalty,
                                        confidence_sizing=s.confidence_sizing),
                   interval=interval, halflife_min=s.narrative_halflife_min, sentiment_trim=s.sentiment_trim,
                   volume_z_window=s.volume_z_window, divergence_threshold=s.divergence_threshold,
                   min_direction_score=s.min_direction_score)


def direction_of(price: float, narrative: float, headline_count: int, min_score: float) -> tuple[int, float]:
    """``composite = 0.6 * price + 0.4 * narrative`` (price alone when there is no relevant headline);
    direction = sign(composite) when ``|composite| >= min_score``, else 0."""
    comp = PRICE_WEIGHT * price + NARRATIVE_WEIGHT * narrative if headline_count > 0 else price
    if abs(comp) < min_score:
        return 0, float(comp)
    return (1 if comp > 0 else -1), float(comp)


def evaluate(symbol: str, bars: pd.DataFrame, scored: Sequence[ScoredHeadline], now: datetime,
             p: EvalParams) -> Signal:
    """Evaluate ``symbol`` from its validated ``bars`` (oldest first, index = bar open time) and the
    scored headlines relevant to it, as of ``now``.

    Pipeline: volume z -> price score -> decayed narrative -> divergence (volume-adaptive trigger) ->
    quality -> regime -> direction -> conviction -> regime-aware gates -> size fraction -> action.
    """
    close = bars["close"].to_numpy(dtype=float)
    high = bars["high"].to_numpy(dtype=float)
    low = bars["low"].to_numpy(dtype=float)
    vol = bars["volume"].to_numpy(dtype=float)

    vz_series = volume_z(vol, p.volume_z_window)
    vz = float(vz_series[-1]) if np.isfinite(vz_series[-1]) else 0.0
    ps = price_score(close, vz)
    nar = narrative_score(scored, now, halflife_min=p.halflife_min, trim=p.sentiment_trim)
    div = divergence(nar.score if nar.count else 0.0, ps.score)
    trig = divergence_trigger(p.divergence_threshold, vz)
    diverged = nar.count > 0 and abs(div) >= trig
    q = signal_quality(nar.score, nar.count, ps.score, vz, ps.rsi, diverged)
    bars_per_year = timedelta(days=365) / p.interval
    regime = market_regime(close, vol, bars_per_year)
    direction, composite = direction_of(ps.score, nar.score, nar.count, p.min_direction_score)
    conv = conviction_score(q.total, direction, regime, vz, nar.score, ps.score, nar.count)
    g = check_gates(q.total, conv.total, direction, regime, p.gates)
    atr_last = float(atr(high, low, close, 14)[-1])

    if g.passed:
        action = Action.BUY if direction > 0 else Action.SELL
        frac = size_fraction(conv.total, p.gates.min_conviction, p.gates.confidence_sizing)
        reason = (f"{action.value}: composite {composite:+.3f}, quality {q.total:.2f} >= {g.required_quality:.2f}, "
                  f"conviction {conv.total:.2f} >= {g.required_conviction:.2f}, regime {regime.label}")
    else:
        action, frac = Action.HOLD, 0.0
        parts = []
        if "no_direction" in g.failed:
            parts.append(f"|composite| {abs(composite):.3f} < {p.min_direction_score:.3f}")
        if "quality" in g.failed:
            parts.append(f"quality {q.total:.2f} < {g.required_quality:.2f}")
        if "conviction" in g.failed:
            parts.append(f"conviction {conv.total:.2f} < {g.required_conviction:.2f}")
        reason = "hold: " + "; ".join(parts)

    top = sorted(scored, key=lambda s: s.headline.published_at, reverse=True)[:10]
    inputs = {
        "bars": len(close), "first_bar": bars.index[0], "last_bar": bars.index[-1],
        "last_ohlcv": [float(bars["open"].iloc[-1]), float(high[-1]), float(low[-1]), float(close[-1]), float(vol[-1])],
        "composite": composite,
        "price_components": {"rsi_component": ps.rsi_component, "macd_hist_z": ps.macd_hist_z,
                             "ema_spread_z": ps.ema_spread_z, "volume_damping": ps.volume_damping},
        "narrative": {"count": nar.count, "effective_weight": nar.effective_weight,
                      "latest_age_min": nar.latest_age_min, "halflife_min": p.halflife_min},
        "headlines": [{"id": s.headline.id, "at": s.headline.published_at, "title": s.headline.title[:160],
                       "score": s.score.value} for s in top],
        "quality_points": {"sentiment": q.sentiment, "momentum": q.momentum, "volume": q.volume,
                           "rsi_extreme": q.rsi_extreme, "aligned": q.aligned_bonus, "contrarian": q.contrarian_bonus},
        "conviction_parts": {"quality": conv.quality_part, "regime_alignment": conv.regime_alignment,
                             "volatility": conv.volatility_score, "confirmation": conv.confirmation},
        "regime_horizons": list(regime.horizon_scores), "participation": regime.participation,
    }
    gates = {"passed": g.passed, "failed": list(g.failed), "required_quality": g.required_quality,
             "required_conviction": g.required_conviction, "min_direction_score": p.min_direction_score,
             "confidence_sizing": p.gates.confidence_sizing}
    return Signal(symbol=symbol, ts=now, price=float(close[-1]), action=action, direction=direction, reason=reason,
                  quality=q.total, conviction=conv.total, regime=regime, price_score=ps.score,
                  narrative=nar.score, divergence=div, divergence_trigger=trig, volume_z=vz, rsi=ps.rsi,
                  atr=atr_last, size_fraction=frac, headline_count=nar.count, scorer_id=nar.scorer_id,
                  gates=gates, inputs=inputs)
