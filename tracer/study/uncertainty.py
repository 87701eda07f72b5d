"""Uncertainty of a study's numbers (pure): circular block bootstrap intervals and the deflated Sharpe ratio.

- Intervals: :class:`arch.bootstrap.CircularBlockBootstrap` (blocks keep the serial dependence of hourly
  returns), percentile method, reproducible for a seed.
- Deflated Sharpe ratio (Bailey & López de Prado, "The Deflated Sharpe Ratio", J. Portfolio Management
  2014): the probability that the true Sharpe ratio exceeds the one expected from the best of ``n``
  unskilled trials, given the length, skewness and kurtosis of the returns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats

EULER_GAMMA = 0.5772156649015329
LEVEL = 0.90


@dataclass(frozen=True)
class Interval:
    point: float | None
    lo: float | None
    hi: float | None

    def as_dict(self) -> dict:
        return {"point": self.point, "lo": self.lo, "hi": self.hi}


def sharpe(r: np.ndarray, periods_per_year: float = 1.0) -> float:
    """mean / standard deviation (ddof 1) x sqrt(periods per year); 0 when the deviation is 0."""
    r = np.asarray(r, float)
    if len(r) < 2:
        return 0.0
    sd = r.std(ddof=1)
    return float(r.mean() / sd * math.sqrt(periods_per_year)) if sd > 0 else 0.0


def _bootstrap(fn: Callable[..., float], arrays: tuple[np.ndarray, ...], block: int, reps: int,
               seed: int) -> Interval:
    from arch.bootstrap import CircularBlockBootstrap
    n = len(arrays[0])
    if n < 2:
        return Interval(float(fn(*arrays)) if n else None, None, None)
    bs = CircularBlockBootstrap(max(1, min(block, n)), *arrays, seed=np.random.default_rng(seed))
    ci = bs.conf_int(lambda *a: np.array([fn(*a)]), reps=reps, method="percentile", size=LEVEL)
    return Interval(float(fn(*arrays)), float(ci[0, 0]), float(ci[1, 0]))


def sharpe_interval(r: np.ndarray, periods_per_year: float, block: int, reps: int = 2000,
                    seed: int = 0) -> Interval:
    """90% interval of the annualised Sharpe ratio of per-bar returns ``r``."""
    return _bootstrap(lambda x: sharpe(x, periods_per_year), (np.asarray(r, float),), block, reps, seed)


def mean_interval(x: np.ndarray, block: int, reps: int = 2000, seed: int = 0) -> Interval:
    """90% interval of the mean (e.g. of per-trade returns, in trade order)."""
    x = np.asarray(x, float)
    if len(x) == 0:
        return Interval(None, None, None)
    return _bootstrap(lambda a: float(a.mean()), (x,), block, reps, seed)


def sharpe_difference_interval(r_a: np.ndarray, r_b: np.ndarray, periods_per_year: float, block: int,
                               reps: int = 2000, seed: int = 0) -> Interval:
    """90% interval of Sharpe(a) - Sharpe(b) for two return series on the same bars (paired: the same blocks
    are drawn for both, so what the market did is held fixed)."""
    a, b = np.asarray(r_a, float), np.asarray(r_b, float)
    if len(a) != len(b):
        raise ValueError(f"paired series differ in length ({len(a)} vs {len(b)})")
    return _bootstrap(lambda x, y: sharpe(x, periods_per_year) - sharpe(y, periods_per_year), (a, b), block,
                      reps, seed)


def expected_max_sharpe(n_trials: int, var_sharpe: float) -> float:
    """SR0: the expected maximum of ``n_trials`` Sharpe ratios of unskilled strategies whose estimates vary
    with variance ``var_sharpe`` (same units as the Sharpe tested). 0 for a single trial."""
    if n_trials < 1:
        raise ValueError(f"the number of trials must be >= 1 (got {n_trials})")
    if n_trials == 1 or var_sharpe <= 0:
        return 0.0
    z1 = stats.norm.ppf(1.0 - 1.0 / n_trials)
    z2 = stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(var_sharpe) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def probabilistic_sharpe(sr: float, sr0: float, t: int, skew: float, kurt: float) -> float:
    """PSR(SR0) = Phi((SR - SR0) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1)/4 SR^2)); SR per period,
    ``kurt`` the (non-excess) kurtosis."""
    if t < 2:
        return float("nan")
    den = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if den <= 0:
        return float("nan")
    return float(stats.norm.cdf((sr - sr0) * math.sqrt(t - 1) / math.sqrt(den)))


@dataclass(frozen=True)
class Deflated:
    sharpe: float              # per period
    sr0: float                 # per period: expected best of n_trials unskilled ones
    dsr: float                 # probability that the true Sharpe exceeds sr0
    n_trials: int
    observations: int
    skew: float
    kurtosis: float

    def as_dict(self) -> dict:
        return dict(vars(self))


def deflated_sharpe(r: np.ndarray, n_trials: int, var_sharpe: float) -> Deflated:
    """Deflated Sharpe ratio of per-period returns ``r`` after ``n_trials`` configurations whose per-period
    Sharpe estimates had variance ``var_sharpe``."""
    r = np.asarray(r, float)
    sr = sharpe(r)
    sk = float(stats.skew(r)) if len(r) > 2 and r.std() > 0 else 0.0
    ku = float(stats.kurtosis(r, fisher=False)) if len(r) > 3 and r.std() > 0 else 3.0
    sr0 = expected_max_sharpe(n_trials, var_sharpe)
    return Deflated(sr, sr0, probabilistic_sharpe(sr, sr0, len(r), sk, ku), n_trials, len(r), sk, ku)
