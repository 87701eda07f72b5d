"""The one evaluation function. Both agents and the backtest call :func:`evaluate` (the live cycle in two steps:
:func:`prepare` per symbol, :func:`decide_many` for all of them).

Pure: bars, scored headlines, a time and parameters in; a :class:`~tracer.models.Signal`
with every input, score, label and the decision with its reason out. No I/O, no clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tracer.data.gaps import find_gaps
from tracer.data.validation import td_ns
from tracer.models import Action, Regime, ScoredHeadline, Signal
from tracer.news.dedupe import parse_weights
from tracer.sentiment.narrative import NarrativeResult, narrative_score
from tracer.signals.features import FeatureRow, feature_row, market_gap
from tracer.signals.gates import GateThresholds
from tracer.signals.regime import HORIZONS
from tracer.signals.scoring import TREND_LABELS, direction, narrative_confidence, scorer_weight, VOL_LABELS, VOLUME_LABELS, ScoreTable, score_table, strength_counts



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
    source_weights: tuple[tuple[str, float], ...] = ()   # headline source -> weight in the narrative
    trend_window_h: float = 0.0     # hours in the higher-timeframe mean of the trend model (0 = the oscillators)
    market_window_h: float = 0.0    # hours in the market filter's mean (0 = no market filter)
    trend_ensemble: bool = False    # the trend gap is the mean over half, one and two trend windows

    @property
    def trend_bars(self) -> int:
        """Bars of ``interval`` in the trend window (0 = off)."""
        return int(round(self.trend_window_h * 3600.0 / self.interval.total_seconds())) if self.trend_window_h else 0

    @property
    def trend_windows(self) -> tuple[int, ...]:
        """The windows (bars) whose mean gaps make the trend gap: () off, one window, or with
        ``trend_ensemble`` half, one and two trend windows (the multi-horizon trend)."""
        w = self.trend_bars
        if w <= 0:
            return ()
        return (max(w // 2, 1), w, 2 * w) if self.trend_ensemble else (w,)

    @property
    def market_bars(self) -> int:
        """Bars of ``interval`` in the market filter's mean (0 = off)."""
        return int(round(self.market_window_h * 3600.0 / self.interval.total_seconds())) if self.market_window_h else 0

    @classmethod
    def from_settings(cls, s: Any, interval: timedelta = timedelta(hours=1),
                      symbols: Sequence[str] | None = None) -> "EvalParams":
        """``symbols``: the agent's feed. The market filter is on only when its symbol is among them (the
        filter reads its bars from that feed); without ``symbols`` (single-asset research) it is off."""
        market_on = s.market_filter != "none" and symbols is not None and s.market_filter in symbols
        return cls(gates=GateThresholds(min_quality=s.min_signal_quality, min_conviction=s.min_conviction_score,
                                        adverse_regime_penalty=s.bear_quality_penalty,
                                        extreme_vol_penalty=s.extreme_vol_quality_penalty,
                                        confidence_sizing=s.confidence_sizing),
                   interval=interval, halflife_min=s.narrative_halflife_min, sentiment_trim=s.sentiment_trim,
                   volume_z_window=s.volume_z_window, divergence_threshold=s.divergence_threshold,
                   min_direction_score=s.min_direction_score,
                   source_weights=tuple(sorted(parse_weights(s.news_source_weights).items())),
                   trend_window_h=s.trend_window_h, trend_ensemble=s.trend_ensemble,
                   market_window_h=(s.market_window_h or s.trend_window_h) if market_on else 0.0)


def direction_of(price: float, narrative: float, headline_count: int, min_score: float) -> tuple[int, float]:
    """``composite = 0.6 * price + 0.4 * narrative`` (price alone when there is no relevant headline);
    direction = sign(composite) when ``|composite| >= min_score``, else 0."""
    d, comp = direction(price, narrative, headline_count, min_score)
    return int(d), float(comp)


def market_context(bars: pd.DataFrame | None, p: EvalParams) -> pd.Series | None:
    """The market symbol's gap from its own mean at each of its ``bars`` (NaN where its window is short), computed
    from those bars only; None when the filter is off or the market symbol has no usable bars this cycle."""
    if p.market_bars <= 0 or bars is None or len(bars) == 0:
        return None
    return pd.Series(market_gap(bars["close"].to_numpy(dtype=float), p.market_bars), index=bars.index)


def market_at(ctx: pd.Series | None, bar_open: pd.Timestamp) -> float:
    """The market gap at the bar that opens at ``bar_open`` (the evaluated symbol's last bar); NaN (unknown: the
    filter then refuses new entries) when the market symbol has no bar at that very time."""
    if ctx is None:
        return float("nan")
    v = ctx.get(bar_open)
    return float(v) if v is not None else float("nan")


@dataclass(frozen=True, slots=True)
class Prepared:
    """One symbol's inputs at a bar close, before the scores: what :func:`decide_many` turns into a signal."""
    symbol: str
    now: datetime
    price: float
    row: FeatureRow
    nar: NarrativeResult
    extra: dict[str, Any] | None
    market_gap: float
    bar_open: Any = None       # its last bar's open time: the symbols compared by the relative-strength filter


_OHLCV = ("open", "high", "low", "close", "volume")


def ohlcv_columns(bars: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """``bars``' open, high, low, close and volume as contiguous float arrays: one conversion of the frame when
    every column is a float64 (the feeds' candles), column by column otherwise. The same values either way."""
    cols = list(bars.columns)
    a = bars.to_numpy()                      # float64 only when every column is one (no conversion then)
    if a.dtype == np.float64 and all(c in cols for c in _OHLCV):
        return tuple(np.ascontiguousarray(a[:, cols.index(c)]) for c in _OHLCV)
    return tuple(bars[c].to_numpy(dtype=float) for c in _OHLCV)


def prepare(symbol: str, bars: pd.DataFrame, scored: Sequence[ScoredHeadline], now: datetime, p: EvalParams,
            market: pd.Series | None = None) -> Prepared:
    """The features of ``symbol``'s validated ``bars`` (oldest first, index = bar open time), the decayed narrative
    of the scored headlines relevant to it as of ``now``, and the market filter's gap at its last bar (``market``:
    :func:`market_context` of the market symbol; ignored when the filter is off)."""
    o, high, low, close, vol = ohlcv_columns(bars)
    row = feature_row(high, low, close, vol, timedelta(days=365) / p.interval, p.volume_z_window, p.trend_windows)
    nar = narrative_score(scored, now, halflife_min=p.halflife_min, trim=p.sentiment_trim,
                          source_weights=dict(p.source_weights))
    top = sorted(scored, key=lambda s: s.headline.published_at, reverse=True)[:10]
    extra = {
        "bars": len(close), "first_bar": bars.index[0], "last_bar": bars.index[-1],
        # holes the gap policy accepted in this window (tracer.data.gaps): the indicators skip over them
        "gaps": [str(g) for g in find_gaps(bars.index.as_unit("ns").asi8, td_ns(p.interval))],
        "last_ohlcv": [float(o[-1]), float(high[-1]), float(low[-1]), float(close[-1]),
                       float(vol[-1])],
        "headlines": [{"id": s.headline.id, "at": s.headline.published_at, "title": s.headline.title[:160],
                       "score": s.score.value} for s in top],
    }
    mg = market_at(market, bars.index[-1])
    if p.market_bars > 0:
        extra["market_gap"] = mg if np.isfinite(mg) else None     # None: unknown, no new entry
    return Prepared(symbol, now, float(close[-1]), row, nar, extra, mg, bars.index[-1])


def evaluate(symbol: str, bars: pd.DataFrame, scored: Sequence[ScoredHeadline], now: datetime,
             p: EvalParams, market: pd.Series | None = None) -> Signal:
    """Evaluate ``symbol`` from its validated ``bars`` and the scored headlines relevant to it, as of ``now``
    (:func:`prepare`, then :func:`decide_many` on that one symbol).

    Pipeline: features (volume z, RSI, MACD/EMA z-scores, ATR, regime parts; :mod:`tracer.signals.features`)
    -> price score -> decayed narrative -> divergence (volume-adaptive trigger) -> quality -> regime ->
    direction -> conviction -> regime-aware gates -> size fraction -> action (:func:`decide`).
    """
    return decide_many([prepare(symbol, bars, scored, now, p, market)], p)[0]


def decide_many(items: Sequence[Prepared], p: EvalParams) -> list[Signal]:
    """The signals of several symbols at once: one :func:`score_table` over their rows (element-wise, so each
    signal is the one :func:`decide` gives its symbol alone; the live cycle pays numpy's call overhead once)."""
    n = len(items)
    if n == 0:
        return []
    h = np.full((n, len(HORIZONS)), np.nan)
    for i, it in enumerate(items):
        h[i, :len(it.row.horizon_scores)] = it.row.horizon_scores
    rows, nars = [it.row for it in items], [it.nar for it in items]
    stronger, weaker = np.full(n, np.nan), np.full(n, np.nan)
    groups: dict[Any, list[int]] = {}     # the cross-section of the relative-strength filter: one bar
    for i, it in enumerate(items):
        groups.setdefault(it.bar_open if it.bar_open is not None else it.now, []).append(i)
    for members in groups.values():
        up, down = strength_counts([[rows[i].trend_gap for i in members]])
        stronger[members], weaker[members] = up[0], down[0]
    t = score_table([f.rsi for f in rows], [f.macd_hist_z for f in rows], [f.ema_spread_z for f in rows],
                    [f.volume_z for f in rows], h, [f.annual_vol for f in rows], [f.participation for f in rows],
                    [x.score for x in nars], [x.count for x in nars], p, [narrative_confidence_of(x) for x in nars],
                    [f.trend_gap for f in rows], [it.market_gap for it in items], strength=(stronger, weaker))
    return [signal_at(it.symbol, it.now, it.price, t, i, it.row, it.nar, p, it.extra) for i, it in enumerate(items)]


def decide(symbol: str, now: datetime, price: float, f: FeatureRow, nar: NarrativeResult, p: EvalParams,
           extra: dict[str, Any] | None = None, market_gap: float = float("nan")) -> Signal:
    """The scores and the decision from one bar's features and the narrative: :func:`score_table` on
    one-element arrays, the same arithmetic the backtest runs over every bar at once."""
    return decide_many([Prepared(symbol, now, price, f, nar, extra, market_gap)], p)[0]


def narrative_confidence_of(nar: NarrativeResult) -> float:
    """Headline count, their dispersion and the scorer, as one confidence (see :mod:`scoring`)."""
    return float(narrative_confidence(nar.count, nar.dispersion, scorer_weight(nar.scorer_id)))


def signal_at(symbol: str, now: datetime, price: float, t: ScoreTable, i: int, f: FeatureRow, nar: NarrativeResult,
              p: EvalParams, extra: dict[str, Any] | None = None) -> Signal:
    """The :class:`Signal` of row ``i`` of a :class:`ScoreTable` (``extra``: inputs to record, or None)."""
    q_total = float(t.quality["total"][i])
    conv = float(t.conviction["total"][i])
    req_q = float(t.gates["required_quality"][i])
    composite = float(t.composite[i])
    direction = int(t.direction[i])
    act = int(t.action[i])
    regime = Regime(label=TREND_LABELS[int(t.trend_code[i])], trend_score=float(t.trend_score[i]),
                    volatility=VOL_LABELS[int(t.vol_code[i])], annual_vol=f.annual_vol,
                    volume=VOLUME_LABELS[int(t.volume_code[i])], participation=f.participation,
                    confidence=float(t.confidence[i]), horizon_scores=tuple(f.horizon_scores))
    if act != 0:
        action = Action.BUY if act > 0 else Action.SELL
        reason = (f"{action.value}: composite {composite:+.3f}, quality {q_total:.2f} >= {req_q:.2f}, "
                  f"conviction {conv:.2f} >= {p.gates.min_conviction:.2f}, regime {regime.label}")
    else:
        action = Action.HOLD
        parts = []
        if t.gates["no_direction"][i]:
            parts.append(f"|composite| {abs(composite):.3f} < {p.min_direction_score:.3f}")
        if t.gates["quality"][i]:
            parts.append(f"quality {q_total:.2f} < {req_q:.2f}")
        if t.gates["conviction"][i]:
            parts.append(f"conviction {conv:.2f} < {p.gates.min_conviction:.2f}")
        reason = "hold: " + "; ".join(parts)
    up, down = float(t.stronger[i]), float(t.weaker[i])
    stronger, weaker = (int(up), int(down)) if np.isfinite(up) and np.isfinite(down) else (-1, -1)
    market_ok = not bool(t.gates["market"][i])
    if not market_ok:
        reason += "; market filter: no new entry this way"

    inputs: dict[str, Any] = {}
    gates: dict[str, Any] = {}
    if extra is not None:
        inputs = dict(extra)
        inputs.update({
            "composite": composite,
            "price_components": {"rsi_component": float(t.rsi_component[i]), "macd_hist_z": f.macd_hist_z,
                                 "trend_gap": f.trend_gap, "trend_bars": p.trend_bars,
                                 "trend_windows": list(p.trend_windows),
                                 "ema_spread_z": f.ema_spread_z, "volume_damping": float(t.damping[i])},
            "narrative": {"count": nar.count, "effective_weight": nar.effective_weight,
                          "latest_age_min": nar.latest_age_min, "halflife_min": p.halflife_min,
                          "dispersion": nar.dispersion, "confidence": narrative_confidence_of(nar)},
            "quality_points": {k: float(t.quality[k][i]) for k in ("sentiment", "momentum", "volume", "rsi_extreme",
                                                                   "aligned", "contrarian")},
            "conviction_parts": {"quality": float(t.conviction["quality"][i]),
                                 "regime_alignment": float(t.conviction["alignment"][i]),
                                 "volatility": float(t.conviction["volatility"][i]),
                                 "confirmation": float(t.conviction["confirmation"][i])},
            "regime_horizons": list(regime.horizon_scores), "participation": regime.participation,
        })
        gates = {"passed": act != 0, "failed": [k for k in ("no_direction", "quality", "conviction")
                                                if t.gates[k][i]],
                 "required_quality": req_q, "required_conviction": p.gates.min_conviction,
                 "min_direction_score": p.min_direction_score, "confidence_sizing": p.gates.confidence_sizing,
                 "market_ok": market_ok, "market_side": int(t.market_side[i]),
                 "stronger": stronger, "weaker": weaker}
    return Signal(symbol=symbol, ts=now, price=price, action=action, direction=direction, reason=reason,
                  quality=q_total, conviction=conv, regime=regime, price_score=float(t.price[i]),
                  narrative=nar.score, divergence=float(t.divergence[i]), divergence_trigger=float(t.trigger[i]),
                  volume_z=f.volume_z, rsi=f.rsi, atr=f.atr, size_fraction=float(t.size_fraction[i]),
                  headline_count=nar.count, scorer_id=nar.scorer_id, gates=gates, inputs=inputs, market_ok=market_ok,
                  market_side=int(t.market_side[i]), stronger=stronger, weaker=weaker)
