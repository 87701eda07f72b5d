"""The optimisation objective (pure): risk-adjusted return, penalised for drawdown and for too few
(freeze) or too many (churn) trades.

``objective = sharpe - dd_penalty * max_drawdown - trade_weight * (shortfall + excess)`` where, with
``tpd`` the closed trades per day of the window,
``shortfall = max(0, min_tpd - tpd) / min_tpd`` (1 with no trade at all) and
``excess = max(0, tpd - max_tpd) / max_tpd``. Sharpe and max drawdown are the backtest's
(:func:`tracer.backtest.metrics.compute_metrics`; drawdown as a positive fraction).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class ObjectiveConfig:
    dd_penalty: float = 5.0
    min_trades_per_day: float = 0.2
    max_trades_per_day: float = 6.0
    trade_weight: float = 2.0

    @classmethod
    def from_settings(cls, s: Any) -> "ObjectiveConfig":
        return cls(dd_penalty=s.optimize_dd_penalty, min_trades_per_day=s.optimize_min_trades_per_day,
                   max_trades_per_day=s.optimize_max_trades_per_day)


def trade_penalty(trades: int, days: float, cfg: ObjectiveConfig) -> float:
    tpd = trades / days if days > 0 else 0.0
    short = max(0.0, cfg.min_trades_per_day - tpd) / cfg.min_trades_per_day if cfg.min_trades_per_day > 0 else 0.0
    excess = max(0.0, tpd - cfg.max_trades_per_day) / cfg.max_trades_per_day
    return short + excess


def objective(metrics: Mapping[str, Any], days: float, cfg: ObjectiveConfig) -> float:
    """The score of one backtest window (higher is better)."""
    sharpe = float(metrics.get("sharpe") or 0.0)
    dd = float(metrics.get("max_drawdown") or 0.0)
    return sharpe - cfg.dd_penalty * dd - cfg.trade_weight * trade_penalty(int(metrics.get("trades") or 0), days, cfg)
