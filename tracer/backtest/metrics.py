"""Performance metrics of a backtest (pure)."""
from __future__ import annotations

import math
from datetime import timedelta
from typing import Sequence

import numpy as np


def max_drawdown(equity: np.ndarray) -> float:
    """Largest peak-to-trough fall as a fraction of the peak (0.25 = -25%), reported as a positive number."""
    e = np.asarray(equity, dtype=float)
    if len(e) == 0:
        return 0.0
    peak = np.maximum.accumulate(e)
    return float(np.max((peak - e) / peak))


def drawdown_series(equity: np.ndarray) -> np.ndarray:
    e = np.asarray(equity, dtype=float)
    peak = np.maximum.accumulate(e)
    return (e - peak) / peak


def compute_metrics(equity: Sequence[float], initial: float, interval: timedelta, trade_pnls: Sequence[float],
                    fees_paid: float, exposure_flags: Sequence[bool], funding: float = 0.0) -> dict:
    """Metrics from the per-bar equity curve (after each step) and the closed trades.

    - total_return = final / initial - 1; CAGR = (final / initial) ** (1 / years) - 1, years = bars * interval / 365 d
    - per-bar simple returns r (initial capital prepended); Sharpe = mean(r) / std(r) * sqrt(bars per year);
      Sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(bars per year) (0 when undefined)
    - max_drawdown on the equity curve (initial prepended); win_rate = wins / trades;
      profit_factor = gross profit / gross loss (None without a losing trade); exposure = share of bars with a position
    """
    e = np.concatenate([[initial], np.asarray(equity, dtype=float)])
    final = float(e[-1])
    bars = len(e) - 1
    per_year = timedelta(days=365) / interval
    years = bars / per_year if per_year else 0.0
    r = np.diff(e) / e[:-1] if bars else np.array([])
    sd = float(r.std(ddof=1)) if len(r) > 1 else 0.0
    sharpe = float(r.mean() / sd * math.sqrt(per_year)) if sd > 0 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))) if len(r) else 0.0
    sortino = float(r.mean() / downside * math.sqrt(per_year)) if downside > 0 else 0.0
    pnl = np.asarray(trade_pnls, dtype=float)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    cagr = (final / initial) ** (1.0 / years) - 1.0 if years > 0 and final > 0 else None
    return {
        "initial_capital": initial,
        "final_equity": final,
        "total_return": final / initial - 1.0,
        "cagr": cagr,
        "sharpe": sharpe,
        "sortino": sortino,
        "max_drawdown": max_drawdown(e),
        "trades": int(len(pnl)),
        "win_rate": float(len(wins) / len(pnl)) if len(pnl) else None,
        "profit_factor": float(wins.sum() / -losses.sum()) if len(losses) else None,
        "exposure": float(np.mean(exposure_flags)) if len(exposure_flags) else 0.0,
        "fees_paid": fees_paid,
        "funding": funding,
        "net_pnl": float(pnl.sum()),
        "bars": bars,
        "years": years,
    }
