"""Exploration windows (pure): which near-miss entries may be taken at a small fixed size.

A signal *narrowly misses* the gates when it has a direction (``|composite| >= TB_MIN_DIRECTION_SCORE``)
but its quality is below the regime-aware required quality by at most ``TB_EXPLORE_QUALITY_MARGIN`` and
its conviction below ``TB_MIN_CONVICTION_SCORE`` by at most ``TB_EXPLORE_CONVICTION_MARGIN`` (at least one
of the two fails, or it would not be a hold).

Which (agent, symbol, bar) explores is deterministic: ``draw = sha256("agent|symbol|bar time")`` read as
a number in [0, 1); the bar explores when ``draw < TB_EXPLORE_SHARE``. The same bar gives the same answer
in the live loop, after a restart and in a backtest, so backtest == live stays true.

Exploration is off when ``TB_EXPLORE_SHARE=0`` (the default) and never runs in live trading
(``TB_LIVE_TRADING=yes``) unless ``TB_EXPLORE_LIVE=true``.
"""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from tracer.models import Action, Signal
from tracer.signals.gates import GateThresholds, check_gates

TAG = "exploration"


def draw(agent: str, symbol: str, ts: datetime) -> float:
    """A uniform number in [0, 1) fixed by agent, symbol and bar time (sha256, not Python's salted hash)."""
    h = hashlib.sha256(f"{agent}|{symbol}|{ts.isoformat()}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64


def allowed(s: Any) -> tuple[bool, str]:
    """Whether the settings allow exploration at all, and why not."""
    if s.explore_share <= 0:
        return False, "TB_EXPLORE_SHARE=0"
    if s.live_trading == "yes" and not s.explore_live:
        return False, "live trading (TB_LIVE_TRADING=yes) without TB_EXPLORE_LIVE=true"
    return True, "ok"


def near_miss(sig: Signal, s: Any) -> dict[str, Any] | None:
    """How far a hold signal fell short of the gates, when it is within the exploration margins; else None."""
    if sig.action is not Action.HOLD or sig.direction not in (1, -1):
        return None
    g = check_gates(sig.quality, sig.conviction, sig.direction, sig.regime,
                    GateThresholds(min_quality=s.min_signal_quality, min_conviction=s.min_conviction_score,
                                   adverse_regime_penalty=s.bear_quality_penalty,
                                   extreme_vol_penalty=s.extreme_vol_quality_penalty,
                                   confidence_sizing=s.confidence_sizing))
    if g.passed or "no_direction" in g.failed:
        return None
    q_short = max(0.0, g.required_quality - sig.quality)
    c_short = max(0.0, g.required_conviction - sig.conviction)
    if q_short > s.explore_quality_margin or c_short > s.explore_conviction_margin:
        return None
    return {"missed": list(g.failed), "quality_short": q_short, "conviction_short": c_short,
            "required_quality": g.required_quality, "required_conviction": g.required_conviction}


def exploration(agent: str, sig: Signal, s: Any) -> dict[str, Any] | None:
    """The exploration tag of this signal when it is to be explored (allowed, a near miss, and its draw
    below the share); None otherwise. The tag is recorded in the order's sizing (``sizing_json``)."""
    ok, _ = allowed(s)
    if not ok:
        return None
    miss = near_miss(sig, s)
    if miss is None:
        return None
    u = draw(agent, sig.symbol, sig.ts)
    if u >= s.explore_share:
        return None
    return dict(miss, draw=u, share=s.explore_share, notional_usd=s.explore_notional_usd)


def label(tag: dict[str, Any] | None) -> str:
    """One line for ``tracer explain``."""
    if not tag:
        return "no"
    return (f"yes: draw {tag['draw']:.4f} < share {tag['share']:.3f}; missed {', '.join(tag['missed'])} "
            f"(quality short {tag['quality_short']:.2f}, conviction short {tag['conviction_short']:.2f}); "
            f"fixed notional {tag['notional_usd']:.2f}")
