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
    """
    now: datetime
    bars: dict[str, pd.DataFrame]
    headlines: list[Headline]
    rejected: dict[str, str]
    notes: dict[str, str] = field(default_factory=dict)


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
