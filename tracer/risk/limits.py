"""Pre-trade risk: every rule an entry must pass, and its size. Pure: no I/O, no clock.

:func:`check_entry` returns either an approved notional/quantity or the first rule that
blocks, with the numbers that made it block (written to ``risk_events``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from tracer.risk.correlation import most_correlated
from tracer.risk.kelly import kelly_position_pct, kelly_scale
from tracer.risk.var import historical_var


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_positions: int
    max_trades_per_day: int
    max_position_pct: float
    max_trade_notional: float
    min_trade_notional: float
    daily_loss_limit_pct: float
    kelly_min_trades: int
    kelly_cap: float
    kelly_floor: float
    max_correlation: float
    var_limit_pct: float
    var_confidence: float
    var_horizon_bars: int
    fee_bps: float = 25.0           # the agent's own taker fee (hybrid: settings.hybrid.costs)
    slippage_bps: float = 5.0

    @classmethod
    def from_settings(cls, s: Any) -> "RiskLimits":
        """The spot (hybrid) agent's limits; the futures agent's come from ``futures_limits``."""
        return cls(max_positions=s.max_positions, max_trades_per_day=s.max_trades_per_day,
                   max_position_pct=s.max_position_pct, max_trade_notional=s.max_trade_notional,
                   min_trade_notional=s.min_trade_notional, daily_loss_limit_pct=s.daily_loss_limit_pct,
                   kelly_min_trades=s.kelly_min_trades, kelly_cap=s.kelly_cap, kelly_floor=s.kelly_floor,
                   max_correlation=s.max_correlation, var_limit_pct=s.portfolio_var_limit,
                   var_confidence=s.var_confidence, var_horizon_bars=s.var_horizon_bars,
                   fee_bps=s.hybrid.costs.fee_bps, slippage_bps=s.hybrid.costs.slippage_bps)


@dataclass(frozen=True, slots=True)
class Book:
    """What the agent holds, as the risk rules need it."""
    equity: float
    cash: float
    day_start_equity: float
    trades_today: int
    exposures: Mapping[str, float]            # symbol -> signed notional of each open position
    closed_returns: tuple[float, ...] = ()    # per-trade returns of the agent's closed trades, oldest first


@dataclass(frozen=True, slots=True)
class Candidate:
    symbol: str
    price: float
    direction: int                             # +1 long, -1 short
    size_fraction: float                       # confidence-based fraction of the max position, (0, 1]
    returns: Mapping[str, np.ndarray]          # one-bar log returns per symbol (candidate and open ones), aligned
    leverage: float = 1.0
    spot: bool = True                          # spot: the notional must be paid in cash
    risk_notional: float | None = None         # futures: notional whose stop-loss costs the risk budget


@dataclass(frozen=True, slots=True)
class RiskDecision:
    approved: bool
    notional: float
    qty: float
    rule: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)


def _block(rule: str, **detail: Any) -> RiskDecision:
    return RiskDecision(False, 0.0, 0.0, rule, detail)


_KELLY_MEMO: list[Any] = [None]      # [(fn, returns, args, result)] of the last Kelly sizing call


def _memo_kelly(fn: Callable[..., Any], returns: Any, *args: Any) -> Any:
    """``fn(returns, *args)``, remembered for the last arguments: the closed-trade returns change only when a
    trade closes, while every candidate of every cycle asks for the sizing (up to 500 returns to convert).
    Pure functions of equal arguments give equal results; only tuples (immutable) are remembered. The
    entry is one tuple, read and replaced whole (safe for agents on threads)."""
    if not isinstance(returns, tuple):
        return fn(returns, *args)
    last = _KELLY_MEMO[0]
    if last is not None and last[0] is fn and last[2] == args and (last[1] is returns or last[1] == returns):
        return last[3]
    out = fn(returns, *args)
    _KELLY_MEMO[0] = (fn, returns, args, out)
    return out


def check_entry(c: Candidate, book: Book, lim: RiskLimits) -> RiskDecision:
    """Rules, in order (the first that fails blocks):

    1. ``daily_loss_limit``: equity fell by ``daily_loss_limit_pct`` or more from the UTC day's start.
    2. ``max_trades_per_day``: ``trades_today >= max_trades_per_day``.
    3. ``max_positions``: as many positions open as allowed; ``position_open``: one is open in the symbol.
    4. sizing: ``notional = equity * pct * size_fraction`` with ``pct = max_position_pct`` or the capped
       half-Kelly once ``kelly_min_trades`` trades have closed; then capped by ``max_trade_notional`` and,
       for spot, by the cash left after fee and slippage. With ``risk_notional`` set (futures; a hybrid entry
       under ``TB_RISK_PER_TRADE``): ``notional =
       risk_notional * size_fraction * kelly_scale``, capped by ``equity * max_position_pct``,
       ``max_trade_notional`` and the margin the free balance can post at the candidate's leverage. ``below_min_notional`` if the result is too small.
    5. ``correlation``: |rho| of the candidate's returns with an open position's above ``max_correlation``.
    6. ``portfolio_var``: historical-simulation VaR of the open positions plus the candidate above
       ``var_limit_pct * equity``. ``var_insufficient_history`` when VaR cannot be computed honestly.
    """
    if book.day_start_equity > 0:
        dd = (book.equity - book.day_start_equity) / book.day_start_equity
        if dd <= -lim.daily_loss_limit_pct:
            return _block("daily_loss_limit", day_return=dd, limit=-lim.daily_loss_limit_pct,
                          equity=book.equity, day_start_equity=book.day_start_equity)
    if book.trades_today >= lim.max_trades_per_day:
        return _block("max_trades_per_day", trades_today=book.trades_today, limit=lim.max_trades_per_day)
    if c.symbol in book.exposures:
        return _block("position_open", symbol=c.symbol)
    if len(book.exposures) >= lim.max_positions:
        return _block("max_positions", open=len(book.exposures), limit=lim.max_positions)
    if (not (c.price > 0 and np.isfinite(c.price)) or not (0 < c.size_fraction <= 1)
            or c.direction not in (1, -1)):
        return _block("invalid_candidate", price=c.price, size_fraction=c.size_fraction, direction=c.direction)

    equity = max(book.equity, 0.0)
    if c.risk_notional is None:
        pct, est = _memo_kelly(kelly_position_pct, book.closed_returns, lim.max_position_pct, lim.kelly_min_trades,
                               lim.kelly_cap, lim.kelly_floor)
        notional = equity * pct * c.size_fraction
        caps = {"equity_pct": equity * pct, "max_trade_notional": lim.max_trade_notional}
    else:
        scale, est = _memo_kelly(kelly_scale, book.closed_returns, lim.kelly_min_trades, lim.kelly_cap,
                                 lim.kelly_floor)
        pct = lim.max_position_pct
        notional = max(c.risk_notional, 0.0) * c.size_fraction * scale
        caps = {"equity_pct": equity * pct, "max_trade_notional": lim.max_trade_notional, "kelly_scale": scale,
                "risk_notional": c.risk_notional}
        notional = min(notional, equity * pct)
    notional = min(notional, lim.max_trade_notional)
    cost_factor = (lim.fee_bps + lim.slippage_bps) / 1e4 * 2
    if c.spot:
        cash_cap = max(book.cash, 0.0) / (1.0 + cost_factor)
        caps["cash"] = cash_cap
        notional = min(notional, cash_cap)
    else:
        # margin (notional / leverage) plus fees and slippage must fit in the free wallet balance
        margin_cap = max(book.cash, 0.0) / (1.0 / max(c.leverage, 1.0) + cost_factor)
        caps["margin"] = margin_cap
        notional = min(notional, margin_cap)
    sizing = {"position_pct": pct, "size_fraction": c.size_fraction, "caps": caps, "leverage": c.leverage,
              "kelly": None if est is None else {"n": est.n, "win_rate": est.win_rate, "payoff": est.payoff,
                                                 "half_kelly": est.half_kelly}}
    if notional < lim.min_trade_notional or notional <= 0:
        return _block("below_min_notional", notional=notional, minimum=lim.min_trade_notional, sizing=sizing)

    cand_r = c.returns.get(c.symbol)
    if cand_r is None:
        return _block("var_insufficient_history", symbol=c.symbol, reason="no returns for the candidate")
    open_r = {s: c.returns[s] for s in book.exposures if s in c.returns}
    missing = [s for s in book.exposures if s not in c.returns]
    if missing:
        return _block("var_insufficient_history", reason="no returns for open positions", symbols=missing)
    if open_r and lim.max_correlation < 1.0:
        sym, rho = most_correlated(cand_r, open_r)
        if abs(rho) > lim.max_correlation:
            return _block("correlation", against=sym, rho=rho, limit=lim.max_correlation)

    cols = [c.symbol] + list(open_r)
    n = min(len(c.returns[s]) for s in cols)
    series = [np.asarray(c.returns[s], float).ravel() for s in cols]
    mat = np.column_stack([r[len(r) - n:] for r in series])  # the common last n bars ([-0:] is everything)
    w = np.array([c.direction * notional] + [book.exposures[s] for s in open_r])
    try:
        var = historical_var(mat, w, lim.var_confidence, lim.var_horizon_bars)
    except ValueError as e:
        return _block("var_insufficient_history", reason=str(e))
    var_limit = lim.var_limit_pct * book.equity
    sizing["var"] = {"value": var, "limit": var_limit, "confidence": lim.var_confidence,
                     "horizon_bars": lim.var_horizon_bars, "observations": int(mat.shape[0])}
    if var > var_limit:
        return _block("portfolio_var", var=var, limit=var_limit, candidate_notional=notional,
                      open_exposure=float(sum(abs(v) for v in book.exposures.values())))
    return RiskDecision(True, notional, notional / c.price, None, sizing)
