"""Half-Kelly position fraction from an agent's own closed trades (pure)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True, slots=True)
class KellyEstimate:
    n: int
    win_rate: float
    payoff: float           # average win / average loss (both as positive numbers)
    full_kelly: float       # p - (1 - p) / b; may be negative (no edge)
    half_kelly: float


def kelly(returns: Sequence[float]) -> KellyEstimate | None:
    """Kelly from per-trade returns: ``f* = p - (1 - p) / b``, ``p`` = share of winning trades,
    ``b`` = mean win / mean |loss|. Half-Kelly = ``f*/2``. None without at least one win and one loss."""
    r = np.asarray(returns, dtype=float)
    r = r[np.isfinite(r)]
    wins, losses = r[r > 0], r[r < 0]
    if len(wins) == 0 or len(losses) == 0:
        return None
    p = len(wins) / len(r)
    # the payoff is a ratio: computed on returns scaled to |r| <= 1 its means cannot overflow, and one of
    # them is at least 1/n; the other may underflow to 0 (b = 0: no edge, f* = -inf; b = inf: f* = p)
    scale = float(np.max(np.abs(r)))
    with np.errstate(divide="ignore", under="ignore"):
        b = float((wins / scale).mean() / np.abs(losses / scale).mean())
    f = p - (1.0 - p) / b if b > 0 else -np.inf
    return KellyEstimate(len(r), p, b, f, f / 2.0)


def kelly_position_pct(returns: Sequence[float], max_position_pct: float, min_trades: int, cap: float,
                       floor: float) -> tuple[float, KellyEstimate | None]:
    """Largest position as a fraction of equity.

    Fewer than ``min_trades`` closed trades with a finite return (or no win/loss yet):
    ``max_position_pct``. Otherwise ``min(max_position_pct, clip(half_kelly, floor, cap))``: a negative
    edge shrinks positions to ``floor`` instead of stopping the agent, so it keeps producing evidence.
    """
    if int(np.isfinite(np.asarray(returns, dtype=float)).sum()) < min_trades:  # NaN returns are no evidence
        return max_position_pct, None
    est = kelly(returns)
    if est is None:
        return max_position_pct, None
    return float(min(max_position_pct, np.clip(est.half_kelly, floor, cap))), est


def kelly_scale(returns: Sequence[float], min_trades: int, cap: float, floor: float) -> tuple[float, KellyEstimate | None]:
    """Multiplier in (0, 1] for risk-based sizing: 1 before ``min_trades`` closed trades (or without a
    win and a loss), then ``clip(half_kelly / cap, floor / cap, 1)``: full size at a half-Kelly of ``cap``
    or more, shrinking with the measured edge, never below ``floor / cap``."""
    finite = [r for r in returns if np.isfinite(r)]
    if len(finite) < min_trades:
        return 1.0, None
    est = kelly(finite)
    if est is None:
        return 1.0, None
    return float(np.clip(est.half_kelly / cap, min(floor / cap, 1.0), 1.0)), est
