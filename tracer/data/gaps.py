"""The gap policy: what a hole in the candles (an exchange maintenance hour) does to decisions.

Exchanges skip bars: the 16-month history in ``shared/data/history`` misses 2021-04-20 02-03h,
2021-04-25 05-07h, 2021-08-13 02-05h and 2021-09-29 07-08h in every symbol, and live venues have
such holes too. One policy, the same for the live feed, the replay feed and the backtest:

1. **Window.** A decision at clock ``now`` sees the closed bars that opened in the last
   ``lookback`` intervals (``now - (lookback + 1) * interval < ts <= now - interval``): a window
   with a hole holds fewer rows, never older bars in their place (the live venues answer a
   time range the same way).
2. **Short hole accepted.** A hole of at most ``max_gap_bars`` missing bars (``TB_MAX_GAP_BARS``,
   default 6) inside the window is accepted: the indicators run on the bars that exist, oldest
   first (the return across the hole is the move over the whole hole), and ``min_bars`` counts
   the bars that exist. The hole is recorded: in the signal's inputs (``gaps``), in the replay
   snapshot's ``notes`` and so in the cycle's ``runs.note``.
3. **No decision without the new bar.** A symbol is evaluated at ``now`` only when its newest bar
   is the one that closed last (at ``now``, for a clock on the bar grid). While bars are missing
   it is skipped for that clock only (``stale: ... (the bar closing at ... is missing)``). The
   replay and the backtest step only on closes every symbol has, so they have no such clock (a
   hole in one symbol only: they skip that clock for every symbol, where live evaluates the others).
4. **Long hole flagged.** A hole of more than ``max_gap_bars`` bars in the window skips the symbol
   (``bad_data: gap: A -> B (N bars > M allowed)`` in the DB) until the hole has left the window;
   decisions resume at the first clock whose window is complete again. The agent alerts once per
   hole through the notification outbox (kind ``data_outage``, see :func:`outages`). A hole still
   going on (live: every source keeps sending its old candles, or none) is no ``gap`` yet, only
   ``stale``: it is alerted once its symbol's newest bar is more than ``max_gap_bars`` bars behind
   ``now`` (:func:`ongoing_outages`), and the ``gap`` alert follows when the bars are back.

``max_gap_bars = 0`` makes every hole a long one. :func:`tracer.data.validation.validate_arrays`
applies rules 2-4 to one window (live and replay); :func:`usable_rows` is the same rule for every
bar of a history at once (the backtest), and a test holds the two equal bar by bar.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from tracer.data.validation import fmt_ts

__all__ = ["DEFAULT_MAX_GAP_BARS", "Gap", "find_gaps", "window_bounds", "usable_rows", "Outage", "outages",
           "outage_message", "OngoingOutage", "ongoing_outages", "ongoing_outage_message"]

DEFAULT_MAX_GAP_BARS = 6


@dataclass(frozen=True, slots=True)
class Gap:
    """A hole: the bars opening from ``first_missing_ns`` up to (not including) ``next_ns`` are missing."""
    first_missing_ns: int
    next_ns: int
    missing: int

    def __str__(self) -> str:
        return f"{fmt_ts(self.first_missing_ns)} -> {fmt_ts(self.next_ns)} ({self.missing} bars)"


def find_gaps(ts: np.ndarray, interval_ns: int) -> list[Gap]:
    """The holes between consecutive open times ``ts`` (ascending, on the interval grid)."""
    ts = np.asarray(ts, dtype=np.int64)
    if len(ts) < 2:
        return []
    step = np.diff(ts)
    at = np.flatnonzero(step > interval_ns)
    return [Gap(int(ts[i]) + interval_ns, int(ts[i + 1]), int(step[i]) // interval_ns - 1) for i in at]


def window_bounds(ts: np.ndarray, now_ns: int, interval_ns: int, lookback: int) -> tuple[int, int]:
    """``(lo, hi)``: rows ``lo:hi`` of the ascending ``ts`` are the window at ``now`` (rule 1)."""
    hi = int(np.searchsorted(ts, now_ns - interval_ns, side="right"))
    lo = int(np.searchsorted(ts, now_ns - (lookback + 1) * interval_ns, side="right"))
    return min(lo, hi), hi


def usable_rows(ts: np.ndarray, interval_ns: int, lookback: int, min_bars: int,
                max_gap_bars: int) -> tuple[np.ndarray, np.ndarray]:
    """For every row ``j`` of a history (ascending open times ``ts``), the window of the decision at
    its close ``ts[j] + interval``: ``(ok, lo)`` where ``lo[j]`` is the window's first row and
    ``ok[j]`` says whether the time axis passes the policy (no hole longer than ``max_gap_bars``
    inside it, at least ``min_bars`` rows). The newest bar is row ``j`` itself: always the new one."""
    ts = np.asarray(ts, dtype=np.int64)
    n = len(ts)
    lo = np.searchsorted(ts, ts - (lookback - 1) * interval_ns, side="left")
    long_ = np.zeros(n, dtype=np.int64)
    if n > 1:
        long_[1:] = np.diff(ts) > (max_gap_bars + 1) * interval_ns   # the hole just before row k
    cs = np.cumsum(long_)
    # holes inside the window of j sit before rows lo[j]+1 .. j
    ok = (cs - cs[lo] == 0) & (np.arange(n) - lo + 1 >= max(int(min_bars), 1))
    return ok, lo


_LONG_GAP = re.compile(r"gap: (\S+) -> (\S+) \((\d+) bars > (\d+) allowed\)")


@dataclass(frozen=True, slots=True)
class Outage:
    """A hole longer than the limit, as the skip reasons name it, and the symbols it skips."""
    first_missing: str
    next_bar: str
    missing: int
    limit: int
    symbols: tuple[str, ...]


def outages(rejected: Mapping[str, str]) -> list[Outage]:
    """The long holes named in a snapshot's ``rejected`` reasons (replay: ``gap: ...``; live: inside
    ``no_source: <source>: invalid: gap: ...``), one per hole with its symbols, in time order."""
    found: dict[tuple[str, str, int, int], list[str]] = {}
    for sym, reason in sorted(rejected.items()):
        m = _LONG_GAP.search(reason)
        if m:
            found.setdefault((m.group(1), m.group(2), int(m.group(3)), int(m.group(4))), []).append(sym)
    return [Outage(a, b, n, lim, tuple(syms)) for (a, b, n, lim), syms in sorted(found.items())]


def outage_message(agent: str, o: Outage, lookback: int) -> str:
    """The alert text. Its first line names the hole only: the outbox sends one alert per first line."""
    return (f"⚠️ {agent} agent: market data outage, {o.missing} bars missing from {o.first_missing} to before "
            f"{o.next_bar} (TB_MAX_GAP_BARS={o.limit})\n"
            f"Skipped while the hole is in the {lookback}-bar look-back window: {', '.join(o.symbols)}. "
            f"Decisions resume by themselves once the window is complete again.")


@dataclass(frozen=True, slots=True)
class OngoingOutage:
    """A hole longer than the limit that has not ended at ``now``: no bar opening at ``first_missing`` or later
    yet, ``missing`` bars so far, for ``symbols``."""
    first_missing: str
    now: str
    missing: int
    limit: int
    symbols: tuple[str, ...]


def ongoing_outages(newest_ns: Mapping[str, int], skipped: Iterable[str], now_ns: int, interval_ns: int,
                    max_gap_bars: int) -> list[OngoingOutage]:
    """The skipped symbols whose newest bar known (open time ``newest_ns[sym]``) is followed by more than
    ``max_gap_bars`` bars that should have closed by ``now``, one outage per first missing bar, in time order.
    A symbol never seen is left out (nothing says when its bars stopped)."""
    found: dict[int, list[str]] = {}
    for sym in sorted(skipped):
        last = newest_ns.get(sym)
        if last is not None and (now_ns - last) // interval_ns - 1 > max_gap_bars:
            found.setdefault(last + interval_ns, []).append(sym)
    return [OngoingOutage(fmt_ts(first), fmt_ts(now_ns), (now_ns - first) // interval_ns, max_gap_bars, tuple(syms))
            for first, syms in sorted(found.items())]


def ongoing_outage_message(agent: str, o: OngoingOutage) -> str:
    """The alert text; its first line names the outage's start only (the outbox sends one per first line)."""
    return (f"⚠️ {agent} agent: market data outage going on, no bar from {o.first_missing} on "
            f"(more than TB_MAX_GAP_BARS={o.limit} missing)\n"
            f"{o.missing} bars missing at {o.now}; skipped: {', '.join(o.symbols)}. No decision there until the "
            f"bars are back (another alert then names the whole hole); held positions keep their exit checks.")
