"""Quiet bars: the runs of bars on which a backtest step can do nothing but mark prices.

A step of the backtest (:func:`tracer.backtest.runner.run_backtest`) does something only when an order is
due, a position's exit can fire, a funding payment falls due, or a signal reaches the policy: a flat
symbol's signal that ``may_act`` lets through, or a held symbol's signal that can exit it. On every other bar
the step only moves prices: the held positions' best prices, the last prices, the equity point, the UTC day.
The driver finds such runs ahead of time and passes over each in one go (the broker's
``quiet_bars`` / ``pass_quiet`` / ``equity_path``), with the same results, bit for bit
(tests/backtest/test_quiet.py runs the same backtests bar by bar and compares).

This module answers the signal half: for each symbol, the next bar at which its signal could reach the
policy, given how many positions are open and, for a held symbol, its position's side. ``may_act`` is
asked once per distinct (action, direction, market_ok, market_side) code and the answer is kept: it is a
pure function of those and of the settings, and for a held symbol of the position's side alone.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from tracer.models import Position

# a code per bar: ((action + 1) * 3 + direction + 1) * 6 + market_ok * 3 + market_side + 1, in 0..53
_CODES = 54


def next_true(mask: np.ndarray) -> np.ndarray:
    """For each index ``i`` of ``mask`` (and ``len(mask)``), the first index ``>= i`` where ``mask`` is true,
    ``len(mask)`` where there is none."""
    n = len(mask)
    idx = np.where(np.asarray(mask, dtype=bool), np.arange(n), n)
    return np.append(np.minimum.accumulate(idx[::-1])[::-1], n)


def _decode(c: int) -> tuple[int, int, bool, int]:
    return c // 18 - 1, c % 18 // 6 - 1, bool(c % 6 // 3), c % 3 - 1


class SignalEvents:
    """Per symbol and bar of the clock (arrays aligned to the clock's bars): where the step loop would hand a
    signal to the policy. ``usable``, ``act`` (the action the loop tests, not a hold), ``action``,
    ``direction``, ``market_ok``, ``market_side``: the columns the loop reads. :attr:`flat_act`: the bars the
    loop considers for a flat symbol (usable, not a hold, and allowed by ``may_act`` with no position open:
    more open positions only ever block more)."""

    def __init__(self, may_act: Callable[..., bool], usable: Mapping[str, np.ndarray], act: Mapping[str, np.ndarray],
                 action: Mapping[str, np.ndarray], direction: Mapping[str, np.ndarray],
                 market_ok: Mapping[str, np.ndarray], market_side: Mapping[str, np.ndarray]):
        self.may_act = may_act
        for cols in (action, direction, market_side):
            if any(len(c) and not (-1 <= int(np.min(c)) and int(np.max(c)) <= 1) for c in cols.values()):
                raise ValueError("actions, directions and market sides are -1, 0 or +1")
        self.code = {s: (((np.asarray(action[s], dtype=np.int64) + 1) * 3 + np.asarray(direction[s], dtype=np.int64)
                          + 1) * 6 + np.asarray(market_ok[s], dtype=np.int64) * 3
                         + np.asarray(market_side[s], dtype=np.int64) + 1) for s in usable}
        self._tables: dict[tuple[object, int], np.ndarray] = {}
        seen = {s: np.asarray(usable[s], dtype=bool) & (np.asarray(act[s]) != 0) for s in usable}
        self.flat_act = {s: seen[s] & self._table(None, 0)[self.code[s]] for s in usable}
        self.held_seen = {s: np.asarray(usable[s], dtype=bool) & ((np.asarray(act[s]) != 0)
                                                                  | (np.asarray(market_side[s]) != 0))
                          for s in usable}
        self._flat: dict[tuple[str, int], np.ndarray] = {}
        self._held: dict[tuple[str, object, int], np.ndarray] = {}

    def _table(self, position: Position | None, n_open: int) -> np.ndarray:
        """``may_act``'s answer per code, for a flat symbol (``position`` None) or a held one of that side."""
        key = (None if position is None else position.side, n_open)
        out = self._tables.get(key)
        if out is not None:
            return out
        out = self._tables[key] = np.zeros(_CODES, dtype=bool)
        for c in range(_CODES):
            a, d, mok, ms = _decode(c)
            out[c] = bool(self.may_act(a, d, None, n_open, mok) if position is None
                          else self.may_act(a, d, position, n_open, mok, ms))
        return out

    def flat_next(self, symbols: Sequence[str], n_open: int, frm: int) -> int:
        """The first bar ``>= frm`` at which one of ``symbols`` (none of them held) has a signal the loop hands
        to the policy with ``n_open`` positions open."""
        best = None
        for s in symbols:
            nxt = self._flat.get((s, n_open))
            if nxt is None:
                ok = self._table(None, n_open)[self.code[s]] & self.flat_act[s]
                nxt = self._flat[s, n_open] = next_true(ok)
            v = int(nxt[min(frm, len(nxt) - 1)])
            best = v if best is None else min(best, v)
        return len(next(iter(self.code.values()))) if best is None else best

    def held_next(self, symbol: str, position: Position, n_open: int, frm: int) -> int:
        """The first bar ``>= frm`` at which ``symbol``'s signal reaches the policy while ``position`` (of
        ``symbol``) is held and ``n_open`` positions are open."""
        key = (symbol, position.side, n_open)
        nxt = self._held.get(key)
        if nxt is None:
            ok = self._table(position, n_open)[self.code[symbol]] & self.held_seen[symbol]
            nxt = self._held[key] = next_true(ok)
        return int(nxt[min(frm, len(nxt) - 1)])


class QuietRuns:
    """Where the next run of quiet bars of a backtest ends (see the module's docstring). ``columns``: per
    symbol its open, high, low and close at each bar of the clock (the rows of a 4 x n array); ``open_ns``:
    the clock's bar open times."""

    def __init__(self, events: SignalEvents, columns: Mapping[str, np.ndarray], open_ns: np.ndarray):
        self.events = events
        self.columns = columns
        self.open_ns = open_ns

    def span(self, broker, positions: Mapping[str, Position], frm: int, stop: int) -> int:
        """The end (exclusive) of the run of quiet bars that starts at bar ``frm`` (``frm``: none), at most
        ``stop``, with ``positions`` held and no order pending at ``broker``."""
        n_open = len(positions)
        end = min(stop, self.events.flat_next([s for s in self.columns if s not in positions], n_open, frm))
        for sym, pos in positions.items():
            if end <= frm:
                return frm
            end = min(end, self.events.held_next(sym, pos, n_open, frm))
        for sym in positions:
            if end <= frm:
                return frm
            end = frm + broker.quiet_bars(sym, self.columns[sym][:, frm:end], self.open_ns[frm:end])
        return max(end, frm)
