"""Rolling walk-forward folds with a purge gap (pure).

Fold k trains on ``[train_start, train_end)``, then ``purge`` is skipped, then it is scored on
``[test_start, test_end)``. The scoring windows tile the end of the data back to back (the last one ends at
the end of the data), so the concatenated out-of-sample (OOS) period is contiguous; each training window is
the ``train`` span just before its purge gap (rolling, not anchored).

Leakage, both ways:

- *future into the choice*: a training run only reads bars up to ``train_end`` (indicators are causal,
  positions still open at ``train_end`` are closed there), and ``train_end <= test_start``, so nothing of
  the scoring window enters the parameter choice;
- *choice into the score*: the first scoring decisions read a look-back window of ``lookback`` bars before
  ``test_start``. With ``purge >= lookback`` those bars were not scored in training either, so no
  scoring decision rests on a bar whose outcome the search was fitted to.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from tracer.optimize.walkforward import Fold


def rolling_folds(start: datetime, end: datetime, train: timedelta, test: timedelta, purge: timedelta,
                  max_folds: int | None = None) -> list[Fold]:
    """Folds between ``start`` (first usable bar close) and ``end`` (exclusive), oldest first.

    Raises ValueError (naming the option) when a window is not positive or not even one fold fits."""
    if train <= timedelta(0):
        raise ValueError(f"--train-days must be positive (got {train / timedelta(days=1):g})")
    if test <= timedelta(0):
        raise ValueError(f"--test-days must be positive (got {test / timedelta(days=1):g})")
    if purge < timedelta(0):
        raise ValueError(f"the purge gap must not be negative (got {purge})")
    if max_folds is not None and max_folds < 1:
        raise ValueError(f"--folds must be >= 1 (got {max_folds})")
    out: list[Fold] = []
    k = 0
    while max_folds is None or len(out) < max_folds:
        test_end = end - k * test
        test_start = test_end - test
        train_end = test_start - purge
        train_start = train_end - train
        if train_start < start:
            break
        out.append(Fold(0, train_start, train_end, test_start, test_end))
        k += 1
    if not out:
        raise ValueError(f"the data window {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} is shorter than one "
                         f"training ({train}) + purge ({purge}) + scoring ({test}) window")
    out.reverse()
    return [Fold(i, f.train_start, f.train_end, f.test_start, f.test_end) for i, f in enumerate(out)]


def check_folds(folds: list[Fold]) -> None:
    """Refuse folds whose training window reaches into its scoring window, or scoring windows that overlap."""
    for f in folds:
        if not (f.train_start < f.train_end <= f.test_start < f.test_end):
            raise ValueError(f"fold {f.index}: training {f.train_start}..{f.train_end} must end before its "
                             f"scoring window {f.test_start}..{f.test_end}")
    for a, b in zip(folds, folds[1:]):
        if b.test_start < a.test_end:
            raise ValueError(f"folds {a.index} and {b.index}: scoring windows overlap")
