"""The market-data feed interface every agent reads from (replay or live)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import pandas as pd

from tracer.models import Headline

__all__ = ["Snapshot", "Feed"]


@dataclass(frozen=True)
class Snapshot:
    """Everything known at ``now``.

    ``bars``: symbol -> DataFrame indexed by bar open time ``ts`` (tz-aware UTC), float64
    columns open, high, low, close, volume, oldest first; only symbols whose window
    passed :func:`tracer.data.validation.validate_bars`.
    ``headlines``: headlines published in the feed's look-back window ending at ``now``
    (inclusive), oldest first.
    ``rejected``: symbol -> validation reason for symbols left out of ``bars``.
    ``notes``: symbol -> what is odd about an accepted window (a hole the gap policy of
    :mod:`tracer.data.gaps` accepts), recorded with the cycle.
    ``exit_bars``: symbol -> for a symbol in ``rejected``, the closed bars of its window that pass the
    per-bar checks (:func:`tracer.data.validation.sound_rows`), same layout as ``bars``: never evaluated,
    they go to a paper broker only, for a held position's exits and a pending order's fill (as the
    backtest's broker sees every bar of a held symbol whatever the gap policy says of its window).
    """
    now: datetime
    bars: dict[str, pd.DataFrame]
    headlines: list[Headline]
    rejected: dict[str, str]
    notes: dict[str, str] = field(default_factory=dict)
    exit_bars: dict[str, pd.DataFrame] = field(default_factory=dict)


@runtime_checkable
class Feed(Protocol):
    """A source of market snapshots.

    Contract (no look-ahead): ``snapshot(now)`` never returns a bar whose CLOSE time
    (``ts + interval``) is after ``now``, nor a headline published after ``now``. A bar
    still forming at ``now`` is therefore never visible. Every symbol in ``symbols``
    appears in exactly one of ``Snapshot.bars`` or ``Snapshot.rejected``.
    """
    symbols: list[str]
    interval: timedelta

    def snapshot(self, now: datetime) -> Snapshot: ...
