"""The research pipeline: one asset over several timeframes, and a whole universe, as of a time.

``scan_asset`` is pure given its inputs (1h bars known at ``now``, the headlines known at ``now``, a
scorer); ``scan_universe`` takes one ``feed.snapshot(now)`` and ranks the assets. Nothing published
or closed after ``now`` is used: the feed's contract keeps later bars and headlines out of the
snapshot, :func:`tracer.research.timeframes.resample` keeps only complete higher-timeframe bars, and
:func:`tracer.sentiment.narrative.narrative_score` refuses a headline from the future.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

import pandas as pd

from tracer.store import iso
from tracer.models import Headline, ScoredHeadline, Signal
from tracer.research.evidence import evidence_line
from tracer.research.plan import Plan, make_plan
from tracer.research.thesis import Alignment, Thesis, alignment, composite, rank_key, thesis
from tracer.research.timeframes import resample
from tracer.research.universe import UniverseConfig
from tracer.sentiment.narrative import relevant
from tracer.signals.evaluate import EvalParams, evaluate

BASE = timedelta(hours=1)


@dataclass
class AssetResult:
    symbol: str
    signals: dict[str, Signal]                 # timeframe label -> Signal, shortest first
    skipped: dict[str, str]                    # timeframe label -> why it was not evaluated
    alignment: Alignment
    thesis: Thesis
    evidence: str
    plans: dict[str, Plan]
    headline: dict | None = None               # the newest relevant headline (title, at, score)
    rank: int = 0


@dataclass
class UniverseResult:
    as_of: datetime
    assets: list[AssetResult]                  # ranked, best first
    rejected: dict[str, str] = field(default_factory=dict)   # symbol -> data problem
    headlines_seen: int = 0


def feed_lookback(cfg: UniverseConfig, lookback_bars: int) -> int:
    """Hourly bars needed so the longest timeframe gets ``lookback_bars`` complete bars (+1 partial bin)."""
    k = max(int(t.tf / BASE) for t in cfg.timeframes)
    return lookback_bars * k + k


def score_headlines(symbol: str, headlines: Sequence[Headline], scorer: Any) -> list[ScoredHeadline]:
    rel = relevant(symbol, headlines)
    if not rel:
        return []
    scores = scorer.score([h.title for h in rel])
    return [ScoredHeadline(h, s) for h, s in zip(rel, scores)]


def scan_asset(symbol: str, bars_1h: pd.DataFrame, scored: Sequence[ScoredHeadline], now: datetime,
               cfg: UniverseConfig, settings: Any) -> AssetResult:
    """Evaluate one asset on every configured timeframe with :func:`evaluate`, then alignment,
    thesis, evidence line and per-timeframe plans."""
    lookback = int(getattr(settings, "universe_lookback_bars", None) or getattr(settings, "lookback_bars", None) or 256)
    min_bars = int(getattr(settings, "universe_min_bars", 60))
    signals: dict[str, Signal] = {}
    skipped: dict[str, str] = {}
    for spec in cfg.timeframes:
        bars = resample(bars_1h, BASE, spec.tf, now).iloc[-lookback:]
        if len(bars) < min_bars:
            skipped[spec.label] = f"insufficient_bars: {len(bars)} < {min_bars} complete {spec.label} bars"
            continue
        signals[spec.label] = evaluate(symbol, bars, scored, now, EvalParams.from_settings(settings, spec.tf))
    al = alignment(signals)
    th = thesis(signals)
    side, conditional = (th.side, False) if th.side else (th.lean, True)
    # Every plan is priced at the last hourly close at ``now``, not at its timeframe's last complete bar (the
    # 00:00 close for a 12:00 scan's 1d call): the move in between happened before the call, and `tracer eval`
    # scores each call from the bar after this one (tracer.research.evaluation).
    price = float(bars_1h["close"].iloc[-1]) if len(bars_1h) else float("nan")
    plans = {spec.label: make_plan(spec.label, spec.tf, price, signals[spec.label].atr, side,
                                   conditional, now, spec.horizon_bars, cfg.plan)
             for spec in cfg.timeframes if spec.label in signals}
    newest = max(scored, key=lambda s: (s.headline.published_at, s.headline.id), default=None)
    head = None if newest is None else {"title": newest.headline.title, "source": newest.headline.source,
                                        "at": newest.headline.published_at, "score": newest.score.value}
    return AssetResult(symbol, signals, skipped, al, th, evidence_line(symbol, signals, al, th), plans, head)


def rank(assets: list[AssetResult]) -> list[AssetResult]:
    out = sorted(assets, key=lambda a: rank_key(a.symbol, a.thesis))
    for i, a in enumerate(out, 1):
        a.rank = i
    return out


def scan_universe(feed: Any, scorer: Any, now: datetime, cfg: UniverseConfig, settings: Any) -> UniverseResult:
    snap = feed.snapshot(now)
    assets = []
    for sym in cfg.symbols:
        if sym not in snap.bars:
            continue
        scored = score_headlines(sym, snap.headlines, scorer)
        assets.append(scan_asset(sym, snap.bars[sym], scored, now, cfg, settings))
    return UniverseResult(now, rank(assets), dict(snap.rejected), len(snap.headlines))


# ------------------------------------------------------------------------------ documents

def signal_scores(s: Signal) -> dict:
    return {"price_score": s.price_score, "narrative": s.narrative, "composite": composite(s),
            "direction": s.direction, "divergence": s.divergence, "divergence_trigger": s.divergence_trigger,
            "volume_z": s.volume_z, "rsi": s.rsi, "atr": s.atr, "quality": s.quality, "conviction": s.conviction,
            "regime": s.regime.label, "regime_confidence": s.regime.confidence, "volatility": s.regime.volatility,
            "annual_vol": s.regime.annual_vol, "action": s.action.value, "reason": s.reason,
            "headline_count": s.headline_count, "scorer_id": s.scorer_id, "price": s.price,
            "bars": s.inputs.get("bars"), "last_bar": s.inputs.get("last_bar")}


def asset_doc(a: AssetResult) -> dict:
    return {"rank": a.rank, "symbol": a.symbol, "thesis": a.thesis.as_dict(), "alignment": a.alignment.as_dict(),
            "evidence": a.evidence, "headline": a.headline,
            "timeframes": {tf: {"scores": signal_scores(s), "plan": a.plans[tf].as_dict()}
                           for tf, s in a.signals.items()},
            "skipped": a.skipped}


def universe_doc(r: UniverseResult, cfg: UniverseConfig, feed_name: str, phash: str) -> dict:
    """The JSON document of a scan. Holds no wall-clock time, so the same scan gives the same bytes."""
    return {"as_of": iso(r.as_of), "feed": feed_name, "params_hash": phash, "config": cfg.as_dict(),
            "ranking": [a.symbol for a in r.assets], "assets": [asset_doc(a) for a in r.assets],
            "rejected": r.rejected, "headlines_seen": r.headlines_seen}
