"""Exit rules evaluated on one bar's open/high/low/close (pure).

Within a bar the order of prices is unknown, so the rule is pessimistic: when a stop and a
target both lie inside the bar, the stop is assumed to have been hit first; a bar that opens
beyond a level fills at the open (a gap), not at the level.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from operator import attrgetter

import numpy as np

from tracer.models import Position, PositionSide


@dataclass(frozen=True, slots=True)
class ExitHit:
    reason: str        # stop_loss / trailing_stop / take_profit / time_stop
    price: float       # the level (or the open on a gap, or the close for a time stop)


def protective_stop(p: Position) -> tuple[float, str]:
    """The active stop level: the hard stop or the trailing stop, whichever is tighter.

    ``stop_loss <= 0`` means no hard stop (the paper broker writes 0.0 for a bracket without
    one); with neither a hard nor a trailing stop the level is -inf (long) / +inf (short), which
    no price reaches.
    """
    if p.side is PositionSide.LONG:
        hard = p.stop_loss if p.stop_loss > 0 else float("-inf")
        trail = p.best_price * (1.0 - p.trail_pct) if p.trail_pct > 0 else float("-inf")
        return (trail, "trailing_stop") if trail > hard else (hard, "stop_loss")
    hard = p.stop_loss if p.stop_loss > 0 else float("inf")
    trail = p.best_price * (1.0 + p.trail_pct) if p.trail_pct > 0 else float("inf")
    return (trail, "trailing_stop") if trail < hard else (hard, "stop_loss")


def check_exit(p: Position, o: float, h: float, l: float, c: float, bar_close_time: datetime) -> ExitHit | None:
    """The exit this bar triggers for ``p``, if any. The trailing level uses the best price seen
    *before* this bar (updated afterwards by :func:`advance`), so no intra-bar look-ahead."""
    long = p.side is PositionSide.LONG
    if p.trail_pct > 0:
        stop, stop_reason = protective_stop(p)
    else:       # no trailing stop: the hard stop (-inf / +inf without one), as protective_stop gives it
        stop = p.stop_loss if p.stop_loss > 0 else (float("-inf") if long else float("inf"))
        stop_reason = "stop_loss"
    # the open is the bar's first trade: a gap through the stop or the target fills there; within the bar, a
    # stop and a target both reached give the stop (the order of the two is unknown: the worse is assumed)
    if long:
        if o <= stop:
            return ExitHit(stop_reason, o)
        if p.take_profit > 0 and o >= p.take_profit:
            return ExitHit("take_profit", o)
        if l <= stop:
            return ExitHit(stop_reason, stop)
        if p.take_profit > 0 and h >= p.take_profit:
            return ExitHit("take_profit", p.take_profit)
    else:
        if o >= stop:
            return ExitHit(stop_reason, o)
        if p.take_profit > 0 and o <= p.take_profit:
            return ExitHit("take_profit", o)
        if h >= stop:
            return ExitHit(stop_reason, stop)
        if p.take_profit > 0 and l <= p.take_profit:
            return ExitHit("take_profit", p.take_profit)
    if p.max_hold_s > 0 and (bar_close_time - p.opened_at).total_seconds() >= p.max_hold_s:
        return ExitHit("time_stop", c)
    return None


# ``dataclasses.replace(p, best_price=...)``, without its per-call field introspection: every field of
# the position, in order, read at once, and the constructor called positionally (same __init__)
_FIELDS = tuple(f.name for f in fields(Position))
_BEST = _FIELDS.index("best_price")
_BEFORE, _AFTER = attrgetter(*_FIELDS[:_BEST]), attrgetter(*_FIELDS[_BEST + 1:])
# attrgetter of one name gives the value, not a 1-tuple; a field outside __init__ cannot be passed
_FAST = all(f.init for f in fields(Position)) and len(_FIELDS[:_BEST]) > 1 and len(_FIELDS[_BEST + 1:]) > 1


def with_best_price(p: Position, best: float) -> Position:
    """``dataclasses.replace(p, best_price=best)``."""
    if not _FAST or type(p) is not Position:
        return replace(p, best_price=best)
    return Position(*_BEFORE(p), best, *_AFTER(p))


def advance(p: Position, h: float, l: float) -> Position:
    """The position after a bar it survived: best price updated for the trailing stop."""
    best = max(p.best_price, h) if p.side is PositionSide.LONG else min(p.best_price, l)
    return p if best == p.best_price else with_best_price(p, best)


# A relative margin by which :func:`exit_possible` errs towards "possible": its answer only lets a backtest
# skip bars on which nothing can happen, so it may flag a bar on which nothing does, never miss one.
_SLACK = 1e-9


def exit_possible(p: Position, o: np.ndarray, h: np.ndarray, l: np.ndarray, close_ns: np.ndarray) -> np.ndarray:
    """Per bar of a run of bars (numpy columns, in order, all prices finite and positive) that ``p`` lives
    through untouched but for its best price (advanced bar by bar as :func:`advance` does): whether
    :func:`check_exit` could fire there (stop, trailing stop, take-profit, time stop). Conservative: the
    price levels are widened by a relative 1e-9 and the time stop by a second."""
    long = p.side is PositionSide.LONG
    if long:
        best = np.maximum.accumulate(np.concatenate(([p.best_price], h[:-1])))
        hard = p.stop_loss if p.stop_loss > 0 else float("-inf")
        stop = np.maximum(best * (1.0 - p.trail_pct), hard) if p.trail_pct > 0 else np.full(len(o), hard)
        hit = (o - stop <= _SLACK * o) | (l - stop <= _SLACK * l)
        if p.take_profit > 0:
            hit |= (p.take_profit - o <= _SLACK * o) | (p.take_profit - h <= _SLACK * h)
    else:
        best = np.minimum.accumulate(np.concatenate(([p.best_price], l[:-1])))
        hard = p.stop_loss if p.stop_loss > 0 else float("inf")
        stop = np.minimum(best * (1.0 + p.trail_pct), hard) if p.trail_pct > 0 else np.full(len(o), hard)
        hit = (stop - o <= _SLACK * o) | (stop - h <= _SLACK * h)
        if p.take_profit > 0:
            hit |= (o - p.take_profit <= _SLACK * o) | (l - p.take_profit <= _SLACK * l)
    if p.max_hold_s > 0:
        opened_ns = p.opened_at.timestamp() * 1e9
        hit |= (close_ns - opened_ns) / 1e9 >= p.max_hold_s - 1.0
    return hit


def best_after(p: Position, h: np.ndarray, l: np.ndarray) -> Position:
    """``p`` after a run of bars it survived: :func:`advance` bar by bar, at once."""
    return advance(p, float(h.max()), float(l.min())) if len(h) else p
