"""One set of numbers for an agent's out-of-sample run and for a benchmark (pure).

The return, risk and trade metrics come from :func:`tracer.backtest.metrics.compute_metrics` (the numbers
``tracer backtest`` prints); this module adds what a study needs on top: Calmar, turnover, entries per day,
average holding time, fees and funding as a share of gross P&L, average trade return and average R, and
the chaining of the scoring windows into one out-of-sample curve.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Sequence

import numpy as np

from tracer.backtest.metrics import compute_metrics


@dataclass(frozen=True)
class TradeRec:
    symbol: str
    long: bool
    entry_ts: datetime
    exit_ts: datetime
    notional: float            # entry notional (qty x entry price)
    pnl: float                 # net of fees and funding
    fees: float
    funding: float             # signed as in Trade: negative = paid
    ret: float                 # pnl / capital committed (notional / leverage)
    r_multiple: float | None   # pnl / risk at the initial stop (None without a stop)


@dataclass(frozen=True)
class Run:
    """An equity curve (after each bar), its trades and costs, in the currency of ``initial``."""
    name: str
    ts: tuple[datetime, ...]
    equity: np.ndarray
    initial: float
    interval: timedelta
    trades: tuple[TradeRec, ...] = ()
    fees: float = 0.0
    funding: float = 0.0       # signed: negative = paid
    exposed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    entries: int = 0

    def returns(self) -> np.ndarray:
        """Per-bar simple returns (the first against ``initial``)."""
        e = np.concatenate([[self.initial], np.asarray(self.equity, float)])
        return np.diff(e) / e[:-1]


def chain(name: str, runs: Sequence[Run]) -> Run:
    """The scoring windows as one curve: each window's per-bar returns compounded from the first window's
    capital; trade and cost amounts scaled by (chained equity at the window's start / its own capital)."""
    if not runs:
        raise ValueError("no run to chain")
    initial = runs[0].initial
    level = initial
    eq, ts, trades, exposed = [], [], [], []
    fees = funding = 0.0
    entries = 0
    for r in runs:
        scale = level / r.initial
        e = level * np.cumprod(1.0 + r.returns())
        eq.append(e)
        ts.extend(r.ts)
        exposed.append(np.asarray(r.exposed, bool))
        trades.extend(replace(t, notional=t.notional * scale, pnl=t.pnl * scale, fees=t.fees * scale,
                              funding=t.funding * scale) for t in r.trades)
        fees += r.fees * scale
        funding += r.funding * scale
        entries += r.entries
        if len(e):
            level = float(e[-1])
    return Run(name, tuple(ts), np.concatenate(eq), initial, runs[0].interval, tuple(trades), fees, funding,
               np.concatenate(exposed), entries)


def _none_if_nan(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def study_metrics(run: Run) -> dict:
    """Every metric of the report for one run (None where undefined: no trade, no loss, no drawdown...)."""
    pnls = [t.pnl for t in run.trades]
    m = compute_metrics(run.equity, run.initial, run.interval, pnls, run.fees, run.exposed, funding=run.funding)
    days = m["bars"] * run.interval / timedelta(days=1)
    years = m["years"]
    mdd = m["max_drawdown"]
    m["calmar"] = _none_if_nan(m["cagr"] / mdd) if (m["cagr"] is not None and mdd > 0) else None
    traded = sum(2.0 * t.notional for t in run.trades)       # in and out
    mean_eq = float(np.mean(run.equity)) if len(run.equity) else run.initial
    m["turnover"] = traded / mean_eq / years if years > 0 and mean_eq > 0 else None   # x equity per year
    m["entries"] = run.entries
    m["entries_per_day"] = run.entries / days if days > 0 else None
    m["days"] = days
    holds = [(t.exit_ts - t.entry_ts) / timedelta(hours=1) for t in run.trades]
    m["avg_hold_h"] = float(np.mean(holds)) if holds else None
    gross = float(sum(pnls)) + run.fees - run.funding       # P&L before fees and funding
    m["gross_pnl"] = gross
    m["fees_share_of_gross"] = run.fees / abs(gross) if gross else None
    m["funding_share_of_gross"] = -run.funding / abs(gross) if gross else None
    rets = [t.ret for t in run.trades]
    m["avg_trade_return"] = float(np.mean(rets)) if rets else None
    rs = [t.r_multiple for t in run.trades if t.r_multiple is not None]
    m["avg_r"] = float(np.mean(rs)) if rs else None
    m["start"] = run.ts[0].isoformat() if run.ts else None
    m["end"] = run.ts[-1].isoformat() if run.ts else None
    return m
