"""How the calls turned out (pure): one call's outcome from the bars after it, and hit rates.

A call is made at ``as_of`` with the last close ``P`` (the close of the hourly bar that closed last by
``as_of``, on every timeframe: :func:`tracer.research.scan.scan_asset`), a side ``s`` (+1 Buy, -1 Sell;
a Watch call carries the lean of its conditional plan), the risk ``R`` (stop distance) and ``horizon_end``.
Its outcome uses ONLY the hourly bars from the one after P's bar (opening at ``as_of`` floored to the hour)
to the last one closing at or before ``horizon_end`` (nothing before P, nothing after the horizon), so the
move, the first touch and the excursions cover the same span; the bars must cover it without a gap,
otherwise there is no outcome (``None``: not enough data). The call table keeps no time for P: it is the
bar closing at ``as_of`` floored to the hour, as long as the feed had that bar at the call.

* ``exit_price`` = close of the last bar (closing at ``horizon_end``, or the last whole hour before it);
* ``move = s * (exit_price - P)``; ``return_pct = move / P``;
* Buy/Sell: ``hit = move > 0`` (price went the way the thesis said) and ``r_multiple = move / R``;
* Watch: ``hit = |exit_price - P| < R`` (no move beyond the invalidation distance, as "wait" implied)
  and ``r_multiple = None`` (no position);
* ``first_touch``: which plan level the bars reached first, ``stop`` or ``target`` (the first
  target), or ``none``; when both are inside one bar, ``stop`` (the worst case);
* ``mfe_r`` / ``mae_r``: the best and worst excursion in the side's direction, in R.

:func:`hit_rates` groups outcomes by action, risk band, readiness and timeframe: per group the
number of calls, hits, the hit rate and the average R (over calls with an R).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

GROUPS = ("action", "risk_band", "readiness", "timeframe")


@dataclass(frozen=True, slots=True)
class Outcome:
    exit_ts: datetime
    exit_price: float
    move: float
    return_pct: float
    r_multiple: float | None
    hit: bool
    first_touch: str
    mfe_r: float
    mae_r: float

    def as_dict(self) -> dict:
        return asdict(self)


def _first_bar_after_price(as_of: datetime, base: timedelta) -> pd.Timestamp:
    """Open of the bar after P's bar: P is the close of the last bar closed by ``as_of``, so this bar opens at
    ``as_of`` floored to the bar (a call at 12:30 is priced at the 12:00 close; 12:00-13:00 is its first bar)."""
    return pd.Timestamp(as_of).floor(pd.Timedelta(base))


def outcome(action: str, side: int, price: float, risk: float, stop: float, target: float, as_of: datetime,
            horizon_end: datetime, bars: pd.DataFrame, base: timedelta = timedelta(hours=1)) -> Outcome | None:
    """The outcome of one call (see the module docstring); ``bars``: hourly, index = open time, UTC."""
    if side not in (1, -1) or not (risk > 0) or not (price > 0):
        raise ValueError(f"bad call: side {side}, risk {risk}, price {price}")
    start = _first_bar_after_price(as_of, base)
    b = pd.Timedelta(base)
    end_open = pd.Timestamp(horizon_end).floor(b) - b                  # open of the last bar inside
    if end_open < start:
        return None
    win = bars[(bars.index >= start) & (bars.index <= end_open)]
    expected = int((end_open - start) / b) + 1
    if len(win) != expected or not win.index.is_monotonic_increasing or win.index[0] != start:
        return None
    hi = win["high"].to_numpy(dtype=float)
    lo = win["low"].to_numpy(dtype=float)
    close = float(win["close"].iloc[-1])
    if side > 0:
        stop_hit, tgt_hit = lo <= stop, hi >= target
        fav, adv = hi.max() - price, price - lo.min()
    else:
        stop_hit, tgt_hit = hi >= stop, lo <= target
        fav, adv = price - lo.min(), hi.max() - price
    first = "none"
    for s_, t_ in zip(stop_hit, tgt_hit):
        if s_:
            first = "stop"
            break
        if t_:
            first = "target"
            break
    move = side * (close - price)
    if action == "Watch":
        hit, r = abs(close - price) < risk, None
    else:
        hit, r = move > 0, move / risk
    return Outcome(exit_ts=(win.index[-1] + b).to_pydatetime(), exit_price=close, move=move,
                   return_pct=move / price, r_multiple=r, hit=bool(hit), first_touch=first,
                   mfe_r=float(max(fav, 0.0) / risk), mae_r=float(max(adv, 0.0) / risk))


BASELINE_WINDOW = timedelta(days=20)
BASELINE_RULE = "sign of the 20-day trend: long when the last close is above its 20-day mean, else short"


def trend_side(bars: pd.DataFrame, as_of: datetime, base: timedelta = timedelta(hours=1),
               window: timedelta = BASELINE_WINDOW) -> int | None:
    """The naive baseline's call at ``as_of``: +1 when the last close before ``as_of`` is above the mean close of
    the bars that closed in the ``window`` before it, else -1; None with fewer bars than the window holds. Uses
    only bars that closed by ``as_of``."""
    b = pd.Timedelta(base)
    closed = bars[bars.index + b <= pd.Timestamp(as_of)]
    need = int(window / base)
    if len(closed) < need:
        return None
    c = closed["close"].to_numpy(dtype=float)[-need:]
    return 1 if c[-1] > c.mean() else -1


def baseline_outcome(side: int, price: float, risk: float, as_of: datetime, horizon_end: datetime,
                     bars: pd.DataFrame, base: timedelta = timedelta(hours=1)) -> Outcome | None:
    """The baseline call's outcome on the same bars, price, risk and horizon as the call it is compared with."""
    return outcome("Buy" if side > 0 else "Sell", side, price, risk, price - side * risk, price + 2 * side * risk,
                   as_of, horizon_end, bars, base)


def baseline_comparison(rows: Iterable[Mapping]) -> dict:
    """The Buy/Sell calls that have a baseline, and the baseline's calls on the same symbols, times and horizons:
    ``{"rule", "calls", "model": group, "baseline": group}``."""
    rows = [r for r in rows if r["action"] in ("Buy", "Sell") and r.get("baseline_hit") is not None]
    base = [{"hit": r["baseline_hit"], "r_multiple": r["baseline_r"]} for r in rows]
    return {"rule": BASELINE_RULE, "calls": len(rows), "model": _group(rows), "baseline": _group(base)}


def _group(rows: Sequence[Mapping]) -> dict:
    n = len(rows)
    hits = sum(1 for r in rows if r["hit"])
    rs = [float(r["r_multiple"]) for r in rows if r.get("r_multiple") is not None]
    return {"calls": n, "hits": hits, "hit_rate": (hits / n) if n else None,
            "r_calls": len(rs), "avg_r": (float(np.mean(rs)) if rs else None),
            "total_r": float(np.sum(rs)) if rs else 0.0}


def hit_rates(rows: Iterable[Mapping]) -> dict:
    """``{"overall": g, "by_action": {...}, "by_risk_band": {...}, "by_readiness": {...},
    "by_timeframe": {...}}``; every ``by_*`` adds up to ``overall`` (same calls, hits, R)."""
    rows = list(rows)
    out: dict = {"overall": _group(rows)}
    for key in GROUPS:
        keys = sorted({str(r[key]) for r in rows})
        out[f"by_{key}"] = {k: _group([r for r in rows if str(r[key]) == k]) for k in keys}
    return out
