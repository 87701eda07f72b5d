"""Walk-forward windows (pure).

Fold k trains on ``[train_start, train_end)`` and is scored on the next, unseen ``[test_start, test_end)``
with ``test_start == train_end``: the two never share a bar. The folds roll forward by ``step`` (default
the test length) and are laid out backwards from ``end``, so the last fold is scored on the most recent
data; only the ``max_folds`` most recent folds are kept.

The backtest takes inclusive ``--from``/``--to`` bar close times, so a window ``[a, b)`` is run as
``start=a, end=b - 1 µs`` (:meth:`Fold.train_range`, :meth:`Fold.test_range`). Positions still open at the
end of a training run are closed there, so no training trade reaches into the scoring window. The scoring
run's indicators look back at bars before ``test_start`` (as the live agent would), but its trades and
equity are only those of the scoring window.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Fold:
    index: int
    train_start: datetime
    train_end: datetime      # exclusive
    test_start: datetime     # == train_end
    test_end: datetime       # exclusive

    def train_range(self) -> tuple[datetime, datetime]:
        return self.train_start, self.train_end - TICK

    def test_range(self) -> tuple[datetime, datetime]:
        return self.test_start, self.test_end - TICK

    @property
    def train_days(self) -> float:
        return (self.train_end - self.train_start) / timedelta(days=1)

    @property
    def test_days(self) -> float:
        return (self.test_end - self.test_start) / timedelta(days=1)

    def as_dict(self) -> dict:
        f = "%Y-%m-%dT%H:%M:%SZ"
        return {"fold": self.index, "train_from": self.train_start.strftime(f), "train_to": self.train_end.strftime(f),
                "test_from": self.test_start.strftime(f), "test_to": self.test_end.strftime(f)}


def folds(start: datetime, end: datetime, train: timedelta, test: timedelta, max_folds: int | None = None,
          step: timedelta | None = None) -> list[Fold]:
    """The walk-forward folds between ``start`` and ``end`` (oldest first). Raises ValueError when not even
    one training plus scoring window fits."""
    if train <= timedelta(0) or test <= timedelta(0):
        raise ValueError("training and scoring windows must be positive")
    step = step or test
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    if end - start < train + test:
        raise ValueError(f"the data window {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} is shorter than one "
                         f"training ({train}) plus scoring ({test}) window")
    out: list[Fold] = []
    k = 0
    while True:
        test_end = end - k * step
        test_start = test_end - test
        train_start = test_start - train
        if train_start < start or (max_folds is not None and len(out) >= max_folds):
            break
        out.append(Fold(0, train_start, test_start, test_start, test_end))
        k += 1
    out.reverse()
    return [Fold(i, f.train_start, f.train_end, f.test_start, f.test_end) for i, f in enumerate(out)]
