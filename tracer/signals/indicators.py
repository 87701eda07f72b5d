"""Technical indicators: pure, vectorised functions with no I/O.

Every function accepts a 1-D numpy array, a list, or a pandas Series. A Series input
gives a Series output with the same index (for functions of several inputs, the index of
the first Series argument); any other input gives a float64 numpy array. ``zscore_last``
returns a plain ``float``.

TA-Lib compatibility (checked against ``talib`` 0.6.x in ``tests/test_indicators.py``)
----------------------------------------------------------------------------------
With TA-Lib's default settings (unstable period 0) ``ema``, ``sma``, ``rsi``, ``atr`` and
``macd`` reproduce TA-Lib from the very first bar TA-Lib outputs (no extra warm-up), with
the same NaN warm-up: differences are ~1e-15 relative to the values (for ``macd``, ~1e-10
absolute at BTC prices: the line is a difference of two ~5e4 EMAs, so relative error is
only meaningful against the price scale). NaN handling:

* leading NaNs are skipped, as the ``talib`` Python wrapper does: the warm-up starts at
  the first bar where every input is non-NaN (same output mask as ``talib``);
* for the recursive indicators (``ema``, ``rsi``, ``atr``, ``macd``) a NaN after that
  point makes that output and every later one NaN (the smoothing state is lost). This
  is what TA-Lib does for ``EMA`` and ``MACD``; TA-Lib's ``RSI`` instead emits 0.0 after
  a NaN and its ``ATR`` silently skips a NaN close, both of which we consider wrong.
  ``sma`` and ``volume_z`` use rolling-window semantics: an output is NaN only while its
  window contains a NaN.

Deliberate deviation: on flat prices (average gain == average loss == 0) ``rsi`` returns
50.0 where TA-Lib returns 0.0.

The exponential recursions are evaluated in closed form, block-wise, with numpy (see
``_linear_recursion``): no Python per-bar loop, and the result at bar ``t`` never depends
on bars after ``t``, bit for bit.

Inputs are expected to be finite prices/volumes; ``inf`` is not special-cased.
"""
from __future__ import annotations

import math
import numbers
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "ema",
    "sma",
    "rsi",
    "atr",
    "macd",
    "volume_z",
    "log_returns",
    "zscore_last",
]


# --------------------------------------------------------------------------- helpers


def _to_array(x: Any, name: str = "x") -> tuple[np.ndarray, pd.Index | None]:
    """Return ``(float64 1-D array, index or None)`` for an array-like or Series."""
    if isinstance(x, pd.Series):
        arr = x.to_numpy(dtype=np.float64, na_value=np.nan)
        index: pd.Index | None = x.index
    elif isinstance(x, pd.DataFrame):
        raise ValueError(f"{name} must be 1-D (array or Series), got a DataFrame")
    else:
        arr = np.asarray(x, dtype=np.float64)
        index = None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr, index


def _to_arrays(**named: Any) -> tuple[list[np.ndarray], pd.Index | None]:
    """Convert several equally long inputs; the index is that of the first Series."""
    arrays: list[np.ndarray] = []
    index: pd.Index | None = None
    for name, value in named.items():
        arr, idx = _to_array(value, name)
        if index is None and idx is not None:
            index = idx
        arrays.append(arr)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        lengths = {k: len(a) for k, a in zip(named, arrays)}
        raise ValueError(f"inputs must have equal lengths, got {lengths}")
    return arrays, index


def _wrap(values: np.ndarray, index: pd.Index | None) -> np.ndarray | pd.Series:
    if index is None:
        return values
    return pd.Series(values, index=index, dtype=np.float64, copy=False)


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    checked = int(value)
    if checked < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {checked}")
    return checked


def _first_valid(*arrays: np.ndarray) -> int:
    """First index at which no array is NaN (len if none): TA-Lib wrapper's ``begidx``."""
    if arrays[0].size and not any(math.isnan(a[0]) for a in arrays):
        return 0                                  # the usual case, without a pass over the series
    bad = np.isnan(arrays[0])
    for a in arrays[1:]:
        bad = bad | np.isnan(a)
    good = np.flatnonzero(~bad)
    return int(good[0]) if good.size else len(arrays[0])


# Longest block of the closed-form recursion below: bounds the size of the cached power
# tables; blocks are also kept short enough that (1 - alpha) ** -k stays far from overflow.
_MAX_BLOCK = 4096


@lru_cache(maxsize=64)
def _power_tables(alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``(r ** k, r ** -k)`` for ``k = 1 .. B`` with ``r = 1 - alpha`` (read-only, cached).

    ``B`` depends on ``alpha`` only, never on the input length, so an output at bar ``t``
    is computed with exactly the same floating-point operations however many bars follow
    it (prefix invariance: no look-ahead, even in the last bit).
    """
    r = 1.0 - alpha
    block = min(_MAX_BLOCK, max(1, int(300.0 / -math.log(r))))  # r ** -block <= e**300
    k = np.arange(1, block + 1, dtype=np.float64)
    pos, neg = r**k, r ** (-k)
    pos.flags.writeable = False
    neg.flags.writeable = False
    return pos, neg


def _linear_recursion(y0: float, x: np.ndarray, alpha: float, out: np.ndarray) -> None:
    """Write ``y[t] = (1 - alpha) * y[t-1] + alpha * x[t]``, ``t = 1 .. len(x)``, into ``out``.

    ``y[0] = y0``; ``out`` (same length as ``x``) receives ``y[1:]``. Vectorised with the
    closed form, block by block: inside a block starting from ``y0``,
    ``y[t] = r**t * (y0 + alpha * cumsum(x[k] * r**-k)[t])`` with ``r = 1 - alpha``.
    Rounding error is about ``eps / alpha`` relative to the terms (the cumulative sum is
    sequential); against TA-Lib's step-by-step loop the difference is ~1e-14 relative.
    ``x`` must be finite.
    """
    if alpha == 1.0:
        out[:] = x
        return
    pos, neg = _power_tables(alpha)
    block = pos.size
    prev = y0
    for b0 in range(0, x.size, block):
        acc = out[b0 : b0 + block]
        m = acc.size
        np.multiply(x[b0 : b0 + m], neg[:m], out=acc)
        np.cumsum(acc, out=acc)
        acc *= alpha
        acc += prev
        acc *= pos[:m]
        prev = acc[-1]


def _seeded_recursion(z: np.ndarray, start: int, m: int, alpha: float) -> np.ndarray:
    """TA-Lib style seeded exponential smoothing of ``z``.

    ``out[start + m - 1] = mean(z[start : start + m])`` (the seed), then
    ``out[t] = out[t-1] + alpha * (z[t] - out[t-1])`` for later ``t``; NaN before the seed.
    A NaN in ``z`` from ``start`` on makes that output and every later one NaN.
    """
    n = len(z)
    out = np.full(n, np.nan)
    first = start + m - 1
    if first >= n:
        return out
    seed = z[start : start + m].sum() / m  # TA-Lib: sum then divide
    if math.isnan(seed):
        return out
    rest = z[first + 1 :]
    bad = np.isnan(rest)
    if bad.any():
        rest = rest[: int(np.argmax(bad))]  # stop at the first NaN; the rest stay NaN
    out[first] = seed
    _linear_recursion(seed, rest, alpha, out[first + 1 : first + 1 + rest.size])
    return out


# ------------------------------------------------------------------------ indicators


def ema(x: Any, span: int) -> np.ndarray | pd.Series:
    """Exponential moving average, seeded like TA-Lib's ``EMA``.

    ``alpha = 2 / (span + 1)``. With ``s`` the first non-NaN index of ``x`` (0 normally):

    * ``ema[s + span - 1] = mean(x[s : s + span])`` (simple-average seed),
    * ``ema[t] = alpha * x[t] + (1 - alpha) * ema[t-1]`` for ``t > s + span - 1``,
    * NaN before the seed, and NaN from the first later NaN in ``x`` onwards.

    No default ``span``; ``span >= 1`` (``span == 1`` returns ``x``). Matches
    ``talib.EMA(x, span)`` from its first output.
    """
    span = _check_int("span", span)
    arr, index = _to_array(x)
    out = _seeded_recursion(arr, _first_valid(arr), span, 2.0 / (span + 1.0))
    return _wrap(out, index)


def sma(x: Any, window: int) -> np.ndarray | pd.Series:
    """Simple moving average ``sma[t] = mean(x[t - window + 1 : t + 1])``.

    NaN until ``window`` values are available and wherever the window holds a NaN
    (rolling semantics). ``window >= 1``, no default. Equals ``talib.SMA`` on finite data.
    """
    window = _check_int("window", window)
    arr, index = _to_array(x)
    out = pd.Series(arr).rolling(window, min_periods=window).mean().to_numpy()
    return _wrap(out, index)


def rsi(close: Any, period: int = 14) -> np.ndarray | pd.Series:
    """Wilder's Relative Strength Index (default ``period=14``), as TA-Lib's ``RSI``.

    With ``d[t] = close[t] - close[t-1]``, ``gain = max(d, 0)``, ``loss = max(-d, 0)``:

    * ``avg_gain[period] = mean(gain[1 : period + 1])`` (simple mean of the first
      ``period`` changes), likewise ``avg_loss``;
    * then Wilder smoothing, ``alpha = 1 / period``:
      ``avg[t] = (avg[t-1] * (period - 1) + value[t]) / period``;
    * ``rsi = 100 * avg_gain / (avg_gain + avg_loss)`` (= ``100 - 100 / (1 + RS)``),
      which is 100 when there are only gains, and defined as 50.0 when
      ``avg_gain == avg_loss == 0`` (flat prices; TA-Lib gives 0.0 there).

    NaN before index ``period`` (counted from the first non-NaN close). Output lies in
    [0, 100]. Matches ``talib.RSI`` (default unstable period 0: TA-Lib uses exactly this
    classic seed) from index ``period`` on, not only after a longer warm-up.
    """
    period = _check_int("period", period)
    arr, index = _to_array(close, "close")
    n = arr.size
    out = np.full(n, np.nan)
    s = _first_valid(arr)
    if n - s > period:
        d = np.empty(n)
        d[: s + 1] = np.nan
        d[s + 1 :] = np.diff(arr[s:])
        gain = np.maximum(d, 0.0)  # np.maximum propagates NaN
        loss = np.maximum(-d, 0.0)
        alpha = 1.0 / period
        avg_gain = _seeded_recursion(gain, s + 1, period, alpha)
        avg_loss = _seeded_recursion(loss, s + 1, period, alpha)
        total = avg_gain + avg_loss
        with np.errstate(invalid="ignore", divide="ignore"):
            out = 100.0 * (avg_gain / total)
        out[total == 0.0] = 50.0
    return _wrap(out, index)


def atr(high: Any, low: Any, close: Any, period: int = 14) -> np.ndarray | pd.Series:
    """Wilder's Average True Range (default ``period=14``), as TA-Lib's ``ATR``.

    True range ``TR[t] = max(high[t] - low[t], |high[t] - close[t-1]|,
    |low[t] - close[t-1]|)`` for ``t >= 1`` (undefined at bar 0). Then
    ``ATR[period] = mean(TR[1 : period + 1])`` and Wilder smoothing
    ``ATR[t] = (ATR[t-1] * (period - 1) + TR[t]) / period``. NaN before index
    ``period`` (counted from the first bar where high, low and close are all non-NaN).
    Non-negative. Matches ``talib.ATR`` from its first output.
    """
    period = _check_int("period", period)
    (h, lo, c), index = _to_arrays(high=high, low=low, close=close)
    n = h.size
    out = np.full(n, np.nan)
    s = _first_valid(h, lo, c)
    if n - s > period:
        tr = np.full(n, np.nan)
        prev_close = c[s:-1]
        hh, ll = h[s + 1 :], lo[s + 1 :]
        tr[s + 1 :] = np.maximum(
            hh - ll, np.maximum(np.abs(hh - prev_close), np.abs(ll - prev_close))
        )
        # np.maximum propagates NaN, so a NaN in any input poisons TR there (as TA-Lib).
        out = _seeded_recursion(tr, s + 1, period, 1.0 / period)
    return _wrap(out, index)


def macd(
    close: Any, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[np.ndarray | pd.Series, np.ndarray | pd.Series, np.ndarray | pd.Series]:
    """MACD ``(macd_line, signal_line, histogram)``, defaults 12/26/9, as TA-Lib's ``MACD``.

    * ``macd_line = EMA_fast(close) - EMA_slow(close)``,
    * ``signal_line = EMA_signal(macd_line)``, ``histogram = macd_line - signal_line``,
      each EMA with ``alpha = 2 / (period + 1)``.

    TA-Lib's seeding is reproduced exactly: both price EMAs start at the same bar,
    ``slow - 1``; the slow one is seeded with ``mean(close[0 : slow])`` and the fast one
    with ``mean(close[slow - fast : slow])`` (the last ``fast`` closes up to that bar, not
    the first ``fast``). The signal EMA is seeded with the mean of the first ``signal``
    MACD values, at bar ``slow + signal - 2``. Like TA-Lib, all three outputs are NaN
    before bar ``slow + signal - 2`` (33 with the defaults), counted from the first
    non-NaN close, and ``fast``/``slow`` are swapped if ``slow < fast``.
    """
    fast = _check_int("fast", fast)
    slow = _check_int("slow", slow)
    signal = _check_int("signal", signal)
    if slow < fast:
        fast, slow = slow, fast
    arr, index = _to_array(close, "close")
    s = _first_valid(arr)
    fast_ema = _seeded_recursion(arr, s + slow - fast, fast, 2.0 / (fast + 1.0))
    slow_ema = _seeded_recursion(arr, s, slow, 2.0 / (slow + 1.0))
    line = fast_ema - slow_ema
    sig = _seeded_recursion(line, s + slow - 1, signal, 2.0 / (signal + 1.0))
    line[: min(arr.size, s + slow + signal - 2)] = np.nan
    hist = line - sig
    return _wrap(line, index), _wrap(sig, index), _wrap(hist, index)


def volume_z(volume: Any, window: int = 20) -> np.ndarray | pd.Series:
    """Z-score of each volume against the *previous* ``window`` volumes (default 20).

    ``z[t] = (v[t] - mean(v[t-window : t])) / std(v[t-window : t])`` where the history
    window EXCLUDES the current bar (so a spike is measured against what came before)
    and ``std`` is the population standard deviation (ddof=0).

    * NaN for ``t < window`` (not enough history) and where ``v[t]`` or its window holds
      a NaN;
    * 0.0 where the history window is constant (std == 0), whatever ``v[t]`` is.

    ``window >= 1``. Each window's mean and std are computed exactly (two passes over the
    window), not with running sums, so a large spike leaving the window leaves no
    rounding residue. Cost O(len * window).
    """
    window = _check_int("window", window)
    arr, index = _to_array(volume, "volume")
    n = arr.size
    out = np.full(n, np.nan)
    m = n - window  # number of bars with a full history window: t = window .. n-1
    if m > 0:
        # Window for output t = window + k is arr[k : k + window]; accumulate over the
        # offset j (vectorised along the long axis, fast for typical small windows).
        total = arr[0:m].copy()
        for j in range(1, window):
            total += arr[j : j + m]
        mean = total / window
        dev = arr[0:m] - mean
        sq = dev * dev
        for j in range(1, window):
            dev = arr[j : j + m] - mean
            sq += dev * dev
        std = np.sqrt(sq / window)
        # A constant window has std exactly 0; detect it exactly (the floating-point mean
        # of equal values need not equal them, which would leave a spurious tiny std):
        # window k is flat iff all window-1 neighbouring pairs inside it are equal.
        eq = np.zeros(n, dtype=np.int64)
        np.cumsum(arr[1:] == arr[:-1], out=eq[1:])
        flat = (eq[window - 1 : window - 1 + m] - eq[:m]) == window - 1
        cur = arr[window:]
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (cur - mean) / std
        z[flat & ~np.isnan(cur)] = 0.0
        out[window:] = z
    return _wrap(out, index)


def volume_z_last(volume: np.ndarray, window: int = 20) -> float:
    """``volume_z(volume, window)[-1]`` for a float array, bit for bit, without the arrays: the live cycle wants
    the last bar only, and the vectorised form's ``2 * window`` one-element array operations cost more than
    the arithmetic. The same operations in the same order (a sequential sum, the two-pass deviation, the exact
    flat-window test), in IEEE double either way."""
    window = _check_int("window", window)
    n = len(volume)
    if n <= window:
        return float("nan")
    w = [float(x) for x in volume[n - window - 1:]]       # the history window, then the current bar
    total = w[0]
    for j in range(1, window):
        total += w[j]
    mean = total / window
    dev = w[0] - mean
    sq = dev * dev
    for j in range(1, window):
        dev = w[j] - mean
        sq += dev * dev
    std = math.sqrt(sq / window)              # a sum of squares: never negative (NaN stays NaN)
    cur = w[window]
    num = cur - mean
    if std == 0.0:                            # x / 0 as numpy gives it: +-inf, or NaN for 0 / 0 and NaN / 0
        z = math.copysign(math.inf, num) if num != 0.0 and num == num else float("nan")
    else:
        z = num / std
    if cur == cur and all(w[j] == w[j + 1] for j in range(window - 1)):
        z = 0.0                               # a flat history window (equal neighbours, exactly)
    return z


def log_returns(close: Any) -> np.ndarray | pd.Series:
    """Log returns ``r[t] = log(close[t] / close[t-1])``; ``r[0]`` is NaN.

    Non-positive prices give NaN/-inf/inf (no warning is raised).
    """
    arr, index = _to_array(close, "close")
    out = np.full(arr.size, np.nan)
    if arr.size > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            out[1:] = np.log(arr[1:] / arr[:-1])
    return _wrap(out, index)


def zscore_last(x: Any, window: int) -> float:
    """Z-score of the last value of ``x`` against its last ``window`` values (float).

    ``(x[-1] - mean(w)) / std(w)`` with ``w = x[-window:]`` (the last value included) and
    the population std (ddof=0). Returns 0.0 when ``x`` has fewer than ``window`` values,
    when any of those ``window`` values is not finite, or when they are all equal
    (std == 0). ``window >= 1``, no default.
    """
    window = _check_int("window", window)
    arr, _ = _to_array(x)
    if arr.size < window:
        return 0.0
    w = arr[-window:]
    if not np.isfinite(w).all():
        return 0.0
    if w.max() == w.min():
        return 0.0
    mean = w.mean()
    std = np.sqrt(np.mean((w - mean) ** 2))
    if not std > 0.0:
        return 0.0
    return float((w[-1] - mean) / std)
