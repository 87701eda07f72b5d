"""One-line benchmark rules on the agents' windows, with the agents' costs (pure).

Every rule decides at a bar's close and fills at the next bar's open, moved against it by the slippage,
paying the fee on the notional, as the paper brokers do; whatever is open at the window's end is closed at
the last close with the same costs. With a funding rate (the futures agent's benchmarks: perpetuals),
every position pays ``side x qty x mark x rate`` at 00/08/16 UTC (:func:`tracer.execution.margin.funding_payment`).

Rules (``N`` coins; an entry commits ``equity / N`` to the coin, so no rule uses leverage):

- ``cash``: never invested.
- ``buy_hold_btc``: all equity in BTC at the first fill.
- ``buy_hold_equal``: ``equity / N`` in every coin at the first fill, never rebalanced.
- ``trend_long``: hold a coin while its last UTC daily close is above the mean of its last 20 daily closes.
- ``trend_long_short``: the same, short while below.

The daily close of day D is the close of the last bar that closes within D (a bar closing at midnight belongs
to the day before); a bar uses the last *completed* day, so no rule reads a price it could not have seen.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Sequence

import numpy as np
import pandas as pd

from tracer.study.metrics import Run, TradeRec

NS = 1_000_000_000
DAY_NS = 86_400 * NS
FUNDING_NS = 8 * 3600 * NS
TREND_DAYS = 20


class Rule(str, Enum):
    CASH = "cash"
    BUY_HOLD_BTC = "buy_hold_btc"
    BUY_HOLD_EQUAL = "buy_hold_equal"
    TREND_LONG = "trend_long"
    TREND_LONG_SHORT = "trend_long_short"


RULE_TEXT = {
    Rule.CASH: "cash",
    Rule.BUY_HOLD_BTC: "buy-and-hold BTC",
    Rule.BUY_HOLD_EQUAL: "equal-weight buy-and-hold",
    Rule.TREND_LONG: "long while close > 20-day mean",
    Rule.TREND_LONG_SHORT: "long/short around the 20-day mean",
}


def rules_for(agent: str) -> list[Rule]:
    """The benchmarks of an agent: the trend rule it can trade (long-only spot, long/short futures)."""
    trend = Rule.TREND_LONG_SHORT if agent == "futures" else Rule.TREND_LONG
    return [Rule.CASH, Rule.BUY_HOLD_BTC, Rule.BUY_HOLD_EQUAL, trend]


@dataclass(frozen=True)
class Market:
    """Prices of several symbols on their common clock (bar open times ``open_ns``)."""
    symbols: tuple[str, ...]
    open_ns: np.ndarray          # int64, bar open times
    interval_ns: int
    open: np.ndarray             # bars x symbols
    close: np.ndarray

    @classmethod
    def from_series(cls, series: Sequence, interval: timedelta) -> "Market":
        common = series[0].ts_ns
        for sr in series[1:]:
            common = np.intersect1d(common, sr.ts_ns, assume_unique=True)
        idx = [np.searchsorted(sr.ts_ns, common) for sr in series]
        return cls(tuple(sr.symbol for sr in series), common, int(interval.total_seconds() * NS),
                   np.column_stack([sr.open[i] for sr, i in zip(series, idx)]),
                   np.column_stack([sr.close[i] for sr, i in zip(series, idx)]))

    @property
    def close_ns(self) -> np.ndarray:
        return self.open_ns + self.interval_ns


def trend_states(m: Market, long_short: bool) -> np.ndarray:
    """bars x symbols of +1 / 0 / -1: the rule's wish at each bar's close, from completed UTC days only."""
    close_ns = m.close_ns
    day_of_close = (close_ns - 1) // DAY_NS          # the UTC day a bar's close falls in
    completed = close_ns // DAY_NS - 1               # the last day complete at the bar's close
    out = np.zeros(m.close.shape, dtype=int)
    for k in range(len(m.symbols)):
        daily = pd.Series(m.close[:, k]).groupby(day_of_close).last()
        sma = daily.rolling(TREND_DAYS).mean()
        sig = np.sign((daily - sma).to_numpy())
        sig = np.where(np.isfinite(sig), sig, 0.0)
        if not long_short:
            sig = np.maximum(sig, 0.0)
        pos = np.searchsorted(daily.index.to_numpy(), completed)
        known = (pos < len(daily)) & (daily.index.to_numpy()[np.minimum(pos, len(daily) - 1)] == completed)
        out[:, k] = np.where(known, sig[np.minimum(pos, len(daily) - 1)], 0).astype(int)
    return out


def states(rule: Rule, m: Market) -> np.ndarray:
    n = len(m.symbols)
    s = np.zeros((len(m.open_ns), n), dtype=int)
    if rule is Rule.BUY_HOLD_EQUAL:
        s[:] = 1
    elif rule is Rule.BUY_HOLD_BTC:
        if "BTC/USD" not in m.symbols:
            raise ValueError("buy-and-hold BTC needs BTC/USD among the symbols")
        s[:, m.symbols.index("BTC/USD")] = 1
    elif rule in (Rule.TREND_LONG, Rule.TREND_LONG_SHORT):
        s = trend_states(m, rule is Rule.TREND_LONG_SHORT)
    return s


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / NS, tz=timezone.utc)


def simulate(rule: Rule, m: Market, lo: int, hi: int, capital: float, fee_bps: float, slippage_bps: float,
             funding_rate: float = 0.0, wish: np.ndarray | None = None) -> Run:
    """The rule over bars ``lo..hi`` (indices into ``m``, inclusive): equity after each bar, trades, costs."""
    if not 0 <= lo <= hi < len(m.open_ns):
        raise ValueError(f"window rows {lo}..{hi} outside the data (0..{len(m.open_ns) - 1})")
    fee, slip = fee_bps / 1e4, slippage_bps / 1e4
    want = states(rule, m) if wish is None else wish
    n = len(m.symbols)
    btc_only = rule is Rule.BUY_HOLD_BTC
    slots = 1 if btc_only else n
    cash, units = capital, np.zeros(n)
    entry = [None] * n            # (ts, price, qty, fee, funding) of the open position per symbol
    trades: list[TradeRec] = []
    fees = funding = 0.0
    entries = 0
    pending: dict[int, int] = {}  # symbol column -> wanted state, filled at the next open
    eq, exposed = np.empty(hi - lo + 1), np.zeros(hi - lo + 1, dtype=bool)
    close_ns = m.close_ns

    def close_pos(k: int, px_raw: float, ts: datetime) -> None:
        nonlocal cash, fees
        q = units[k]
        side = 1 if q > 0 else -1
        px = px_raw * (1 - side * slip)
        f = abs(q) * px * fee
        cash += q * px - f
        fees += f
        ets, epx, eq_qty, efee, efund = entry[k]
        pnl = q * (px - epx) - efee - f + efund
        basis = abs(eq_qty) * epx
        trades.append(TradeRec(m.symbols[k], side > 0, ets, ts, basis, pnl, efee + f, efund,
                               pnl / basis if basis else 0.0, None))
        units[k] = 0.0
        entry[k] = None

    for step, i in enumerate(range(lo, hi + 1)):
        ts_open = _utc(int(m.open_ns[i]))
        for k, target in sorted(pending.items()):
            if units[k] != 0:
                close_pos(k, m.open[i, k], ts_open)
            if target != 0:
                equity_now = cash + float(units @ m.open[i])
                px = m.open[i, k] * (1 + target * slip)
                q = target * (equity_now / slots) / px
                f = abs(q) * px * fee
                cash -= q * px + f
                fees += f
                units[k] = q
                entry[k] = (ts_open, px, q, f, 0.0)
                entries += 1
        pending = {}
        if funding_rate and close_ns[i] % FUNDING_NS == 0:
            for k in np.flatnonzero(units):
                pay = units[k] * m.close[i, k] * funding_rate      # longs pay a positive rate
                cash -= pay
                funding -= pay
                ets, epx, q, f, fund = entry[k]
                entry[k] = (ets, epx, q, f, fund - pay)
        eq[step] = cash + float(units @ m.close[i])
        exposed[step] = bool(np.any(units != 0))
        if i < hi:
            held = np.sign(units).astype(int)
            for k in range(n):
                if want[i, k] != held[k]:
                    pending[k] = int(want[i, k])
    end_ts = _utc(int(close_ns[hi]))
    for k in np.flatnonzero(units):
        close_pos(k, m.close[hi, k], end_ts)
    eq[-1] = cash
    return Run(rule.value, tuple(_utc(int(x)) for x in close_ns[lo:hi + 1]), eq, capital,
               timedelta(seconds=m.interval_ns / NS), tuple(trades), fees, funding, exposed, entries)


def window_rows(m: Market, start: datetime, end: datetime) -> tuple[int, int]:
    """Rows whose bar close time lies in ``[start, end]`` (inclusive, as the backtest's --from/--to)."""
    c = m.close_ns
    lo = int(np.searchsorted(c, int(start.timestamp() * NS), side="left"))
    hi = int(np.searchsorted(c, int(end.timestamp() * NS), side="right")) - 1
    if lo > hi:
        raise ValueError(f"no bar closes in {start} .. {end}")
    return lo, hi
