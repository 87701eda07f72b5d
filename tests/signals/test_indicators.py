"""Tests for tracer.signals.indicators: TA-Lib parity on real candles, hand-worked
examples, input/output types, invariants (hypothesis) and absence of look-ahead."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import talib
from tracer.signals import indicators as ind

BUNDLED = Path(ind.__file__).resolve().parents[1] / "data" / "bundled"
RTOL = ATOL = 1e-9


def _load(symbol: str) -> pd.DataFrame:
    df = pd.read_csv(BUNDLED / f"candles_1h_{symbol}.csv")
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df.set_index("timestamp").astype("float64")


@pytest.fixture(scope="module", params=["BTCUSDT", "ETHUSDT"])
def candles(request) -> pd.DataFrame:
    return _load(request.param)


def assert_matches_talib(ours, ref, *, min_valid: int = 1) -> None:
    """Same NaN warm-up as TA-Lib and equal to 1e-9 (rel and abs) wherever defined."""
    ours = np.asarray(ours, dtype=float)
    ref = np.asarray(ref, dtype=float)
    assert ours.shape == ref.shape
    assert_array_equal(np.isnan(ours), np.isnan(ref))
    ok = ~np.isnan(ref)
    assert ok.sum() >= min_valid
    assert_allclose(ours[ok], ref[ok], rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------ TA-Lib parity


@pytest.mark.parametrize("span", [2, 3, 9, 12, 26, 50, 200])
def test_ema_matches_talib(candles, span):
    c = candles["close"].to_numpy()
    assert_matches_talib(ind.ema(c, span), talib.EMA(c, span), min_valid=len(c) - span)


@pytest.mark.parametrize("window", [2, 20, 50, 200])
def test_sma_matches_talib(candles, window):
    c = candles["close"].to_numpy()
    assert_matches_talib(ind.sma(c, window), talib.SMA(c, window))


@pytest.mark.parametrize("period", [2, 7, 14, 30])
def test_rsi_matches_talib_from_first_output(candles, period):
    # With TA-Lib's default unstable period (0) TA-Lib seeds RSI with the classic simple
    # mean of the first `period` changes, so the match is exact from index `period`
    # on; no longer warm-up is needed.
    c = candles["close"].to_numpy()
    ours, ref = ind.rsi(c, period), talib.RSI(c, period)
    assert np.isnan(ours[period - 1]) and not np.isnan(ours[period])
    assert_matches_talib(ours, ref, min_valid=len(c) - period)


@pytest.mark.parametrize("period", [1, 2, 14, 30])
def test_atr_matches_talib(candles, period):
    h, lo, c = (candles[k].to_numpy() for k in ("high", "low", "close"))
    ours, ref = ind.atr(h, lo, c, period), talib.ATR(h, lo, c, period)
    assert not np.isnan(ours[period])
    assert_matches_talib(ours, ref, min_valid=len(c) - period)


@pytest.mark.parametrize(
    "fast,slow,signal", [(12, 26, 9), (5, 35, 5), (3, 10, 16), (8, 17, 1), (26, 12, 9)]
)
def test_macd_matches_talib_everywhere_defined(candles, fast, slow, signal):
    # Exact replication of TA-Lib's seeding (both EMAs start at bar slow-1, the fast one
    # seeded with the mean of close[slow-fast:slow]); no extra warm-up.
    c = candles["close"].to_numpy()
    ours = ind.macd(c, fast, slow, signal)
    ref = talib.MACD(c, fast, slow, signal)
    first = max(fast, slow) + signal - 2
    for o, r in zip(ours, ref):
        assert not np.isnan(o[first]) and np.isnan(o[first - 1])
        assert_matches_talib(o, r, min_valid=len(c) - first)


@pytest.mark.parametrize("window", [5, 20, 50])
def test_volume_z_matches_talib_sma_stddev_of_previous_window(candles, window):
    v = candles["volume"].to_numpy()
    mean = talib.SMA(v, window)  # mean[t] = mean(v[t-window+1 : t+1])
    std = talib.STDDEV(v, window, 1.0)  # population std, same window
    ref = np.full_like(v, np.nan)
    ref[window:] = (v[window:] - mean[window - 1 : -1]) / std[window - 1 : -1]
    assert_matches_talib(ind.volume_z(v, window), ref, min_valid=len(v) - window)


def test_log_returns_matches_talib_rocr(candles):
    c = candles["close"].to_numpy()
    assert_matches_talib(ind.log_returns(c), np.log(talib.ROCR(c, 1)))


@pytest.mark.parametrize("window", [5, 20, 100])
def test_zscore_last_matches_talib(candles, window):
    c = candles["close"].to_numpy()
    mean, std = talib.SMA(c, window), talib.STDDEV(c, window, 1.0)
    for end in (window, 500, 3333, len(c)):
        ref = (c[end - 1] - mean[end - 1]) / std[end - 1]
        assert math.isclose(ind.zscore_last(c[:end], window), ref, rel_tol=RTOL, abs_tol=ATOL)


def test_leading_nans_are_skipped_like_talib(candles):
    c = candles["close"].to_numpy()[:600].copy()
    h, lo = candles["high"].to_numpy()[:600].copy(), candles["low"].to_numpy()[:600].copy()
    c[:5] = np.nan
    h[:8] = np.nan
    assert_matches_talib(ind.ema(c, 12), talib.EMA(c, 12))
    assert_matches_talib(ind.rsi(c), talib.RSI(c))
    assert_matches_talib(ind.atr(h, lo, c), talib.ATR(h, lo, c))
    for o, r in zip(ind.macd(c), talib.MACD(c)):
        assert_matches_talib(o, r)


def test_nan_inside_series_poisons_later_recursive_outputs(candles):
    c = candles["close"].to_numpy()[:300].copy()
    h, lo = candles["high"].to_numpy()[:300], candles["low"].to_numpy()[:300]
    c[150] = np.nan
    # EMA and MACD: identical to TA-Lib (NaN from the gap on).
    assert_matches_talib(ind.ema(c, 12), talib.EMA(c, 12))
    for o, r in zip(ind.macd(c), talib.MACD(c)):
        assert_matches_talib(o, r)
    # RSI / ATR: NaN from the gap on (TA-Lib would emit 0.0 / skip the bad close).
    r, a = ind.rsi(c), ind.atr(h, lo, c)
    assert np.isfinite(r[14:150]).all() and np.isnan(r[150:]).all()
    # ATR at the gap bar needs only its high/low and the previous close: still defined.
    assert np.isfinite(a[14:151]).all() and np.isnan(a[151:]).all()
    # Rolling indicators recover once the NaN has left the window.
    s = ind.sma(c, 10)
    assert np.isnan(s[150:160]).all() and np.isfinite(s[160:]).all()
    vz = ind.volume_z(c, 10)
    assert np.isnan(vz[150:161]).all() and np.isfinite(vz[161:]).all()


# --------------------------------------------------------------- hand-worked examples


def test_ema_hand_example():
    # alpha = 2/(3+1) = 0.5; seed at i=2: (1+2+3)/3 = 2; i=3: 0.5*4 + 0.5*2 = 3;
    # i=4: 0.5*5 + 0.5*3 = 4.
    assert_allclose(ind.ema([1, 2, 3, 4, 5], 3), [np.nan, np.nan, 2.0, 3.0, 4.0], rtol=0)
    assert_array_equal(ind.ema([1.0, 2.0], 3), [np.nan, np.nan])
    assert_array_equal(ind.ema([4.0, 5.0, 6.0], 1), [4.0, 5.0, 6.0])


def test_sma_hand_example():
    assert_allclose(ind.sma([1, 2, 3, 4, 5], 3), [np.nan, np.nan, 2.0, 3.0, 4.0], rtol=0)


def test_rsi_hand_example():
    # closes 10, 11, 10.5, 11.5, 11, 12; period 3
    # changes +1, -0.5, +1, -0.5, +1 -> gains 1,0,1,0,1  losses 0,.5,0,.5,0
    # i=3: ag=(1+0+1)/3=2/3, al=.5/3=1/6           -> 100*(2/3)/(5/6)   = 80
    # i=4: ag=(2/3*2+0)/3=4/9, al=(1/6*2+.5)/3=5/18 -> 100*(8/18)/(13/18) = 800/13
    # i=5: ag=(4/9*2+1)/3=17/27, al=(5/18*2+0)/3=5/27 -> 100*17/22
    out = ind.rsi([10, 11, 10.5, 11.5, 11, 12], 3)
    assert_allclose(out, [np.nan, np.nan, np.nan, 80.0, 800 / 13, 1700 / 22], rtol=1e-12)


def test_rsi_all_gains_and_flat():
    assert_array_equal(ind.rsi([1, 2, 3, 4, 5, 6], 2), [np.nan, np.nan, 100, 100, 100, 100])
    assert_array_equal(ind.rsi([5.0] * 6, 2), [np.nan, np.nan, 50, 50, 50, 50])
    # Deliberate deviation: TA-Lib reports 0.0 for a flat series.
    assert_array_equal(talib.RSI(np.full(6, 5.0), 2)[2:], 0.0)
    # Rise then flat: no losses ever, so still 100 (as TA-Lib).
    x = np.r_[np.linspace(1, 2, 20), np.full(30, 2.0)]
    assert_array_equal(ind.rsi(x, 14)[14:], 100.0)
    assert_matches_talib(ind.rsi(x, 14), talib.RSI(x, 14))


def test_atr_hand_example():
    high = [10, 11, 12, 11, 6]
    low = [8, 9, 11, 7, 5]
    close = [9, 10.5, 11.5, 8, 5.5]
    # TR1 = max(11-9, |11-9|, |9-9|)            = 2
    # TR2 = max(12-11, |12-10.5|, |11-10.5|)    = 1.5
    # TR3 = max(11-7, |11-11.5|, |7-11.5|)      = 4.5
    # TR4 = max(6-5, |6-8|, |5-8|)  (gap down)  = 3
    # period 2: ATR2 = (2+1.5)/2 = 1.75; ATR3 = (1.75+4.5)/2 = 3.125;
    #           ATR4 = (3.125+3)/2 = 3.0625
    out = ind.atr(high, low, close, 2)
    assert_allclose(out, [np.nan, np.nan, 1.75, 3.125, 3.0625], rtol=1e-15)
    assert_allclose(ind.atr(high, low, close, 1), [np.nan, 2, 1.5, 4.5, 3], rtol=1e-15)


def test_macd_hand_example():
    # fast=2 (alpha 2/3), slow=3 (alpha 1/2), signal=2 on 1..6. At i=2: slow seed
    # mean(1,2,3)=2, fast seed mean(2,3)=2.5 (TA-Lib: last `fast` closes), line 0.5;
    # i=3: fast 2.5+2/3*1.5=3.5, slow 2+.5*2=3 -> 0.5; stays 0.5 on a straight line.
    # Signal seed at i=3 = mean(.5,.5); everything NaN before slow+signal-2 = 3.
    line, sig, hist = ind.macd([1, 2, 3, 4, 5, 6], 2, 3, 2)
    nan3 = [np.nan] * 3
    assert_allclose(line, nan3 + [0.5] * 3, rtol=1e-14)
    assert_allclose(sig, nan3 + [0.5] * 3, rtol=1e-14)
    assert_allclose(hist, nan3 + [0.0] * 3, atol=1e-14)


def test_volume_z_hand_example():
    # window 3, history excludes the current bar, population std:
    # i=3: hist [1,2,3]  mean 2,    var 2/3   -> (10-2)/sqrt(2/3)     = 8*sqrt(1.5)
    # i=4: hist [2,3,10] mean 5,    var 38/3  -> (4-5)/sqrt(38/3)
    # i=5: hist [3,10,4] mean 17/3, var 86/9  -> (4-17/3)/(sqrt(86)/3) = -5/sqrt(86)
    # i=6: hist [10,4,4] mean 6,    var 8     -> (4-6)/sqrt(8)         = -1/sqrt(2)
    # i=7: hist [4,4,4]  std 0                -> 0.0
    out = ind.volume_z([1, 2, 3, 10, 4, 4, 4, 4], 3)
    expected = [np.nan] * 3 + [
        8 * math.sqrt(1.5), -1 / math.sqrt(38 / 3), -5 / math.sqrt(86), -1 / math.sqrt(2), 0.0
    ]
    assert_allclose(out, expected, rtol=1e-12)


def test_volume_z_flat_history_is_zero_even_with_inexact_mean():
    # 0.1 is not representable: the float mean of [0.1]*20 is not exactly 0.1, so a
    # naive std would be ~1e-17 and z would explode. A spike on a flat history -> 0.0.
    v = np.r_[np.full(20, 0.1), 5.0, 0.1]
    out = ind.volume_z(v, 20)
    assert out[20] == 0.0
    assert np.isfinite(out[21]) and out[21] < 0


def test_log_returns_hand_example():
    assert_allclose(ind.log_returns([1.0, math.e, math.e**3]), [np.nan, 1.0, 2.0], rtol=1e-15)
    assert_array_equal(ind.log_returns([5.0]), [np.nan])


def test_zscore_last_hand_example_and_degenerate_cases():
    # last 4 of [1,2,3,4,10]: [2,3,4,10], mean 4.75, var 38.75/4 = 9.6875
    assert math.isclose(ind.zscore_last([1, 2, 3, 4, 10], 4), 5.25 / math.sqrt(9.6875))
    assert isinstance(ind.zscore_last(np.arange(10.0), 5), float)
    assert ind.zscore_last([1.0, 2.0], 3) == 0.0  # not enough values
    assert ind.zscore_last([1.0, np.nan, 2.0, 3.0], 3) == 0.0  # NaN in window
    assert ind.zscore_last([9.0, 1.0, 2.0, np.nan, 3.0, 4.0], 2) != 0.0  # NaN outside
    assert ind.zscore_last([0.1] * 30, 20) == 0.0  # constant (inexact mean)
    assert ind.zscore_last([1.0, 2.0, 3.0], 1) == 0.0


def test_short_and_empty_inputs():
    for f in (lambda x: ind.ema(x, 5), lambda x: ind.rsi(x), lambda x: ind.volume_z(x),
              lambda x: ind.sma(x, 5), lambda x: ind.atr(x, x, x)):
        for x in (np.array([]), np.arange(1.0, 5.0)):
            out = f(x)
            assert isinstance(out, np.ndarray) and out.shape == x.shape
            assert np.isnan(out).all()  # fewer bars than the warm-up
    assert ind.log_returns(np.array([])).shape == (0,)
    assert all(o.shape == (10,) and np.isnan(o).all() for o in ind.macd(np.arange(10.0)))


def test_invalid_arguments():
    with pytest.raises(ValueError):
        ind.ema([1.0, 2.0], 0)
    with pytest.raises(TypeError):
        ind.rsi([1.0, 2.0], 2.5)
    with pytest.raises(TypeError):
        ind.sma([1.0, 2.0], True)
    with pytest.raises(ValueError):
        ind.ema(np.ones((3, 3)), 2)
    with pytest.raises(ValueError):
        ind.atr([1.0, 2.0], [1.0], [1.0, 2.0])


# ------------------------------------------------------------------------- types


def test_series_in_series_out_array_in_array_out(candles):
    df = candles.iloc[:300]
    c, h, lo, v = df["close"], df["high"], df["low"], df["volume"]
    series_outputs = [
        ind.ema(c, 12), ind.sma(c, 20), ind.rsi(c), ind.atr(h, lo, c), ind.volume_z(v),
        ind.log_returns(c), *ind.macd(c),
        ind.atr(h.to_numpy(), lo, c.to_numpy()),  # index taken from the Series argument
    ]
    for out in series_outputs:
        assert isinstance(out, pd.Series)
        assert out.index.equals(df.index)
        assert out.dtype == np.float64
    array_outputs = [
        ind.ema(c.to_numpy(), 12), ind.sma(list(c), 20), ind.rsi(c.to_numpy()),
        ind.atr(h.to_numpy(), lo.to_numpy(), c.to_numpy()), ind.volume_z(list(v)),
        ind.log_returns(c.to_numpy()), *ind.macd(list(c)),
    ]
    for out, ser in zip(array_outputs, series_outputs):
        assert type(out) is np.ndarray and out.dtype == np.float64 and out.shape == (300,)
        assert_array_equal(out, ser.to_numpy())
    ints = ind.ema(np.arange(10), 3)
    assert type(ints) is np.ndarray and ints.dtype == np.float64
    assert isinstance(ind.zscore_last(c, 20), float)


def test_inputs_not_modified(candles):
    c = candles["close"].iloc[:100].copy()
    before = c.copy()
    ind.ema(c, 5), ind.rsi(c), ind.macd(c), ind.volume_z(c), ind.atr(c, c, c)
    pd.testing.assert_series_equal(c, before)


# -------------------------------------------------------------------- properties

positive_prices = st.lists(
    st.floats(min_value=1e-4, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=2, max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(prices=positive_prices, period=st.integers(min_value=1, max_value=30))
def test_rsi_bounded(prices, period):
    out = ind.rsi(np.array(prices), period)
    valid = out[period:]
    assert np.isnan(out[:period]).all()
    assert np.isfinite(valid).all()
    assert ((valid >= 0.0) & (valid <= 100.0)).all()


bars = st.lists(
    st.tuples(
        st.floats(min_value=1e-4, max_value=1e5),  # low
        st.floats(min_value=0.0, max_value=1e4),  # high - low
        st.floats(min_value=0.0, max_value=1.0),  # close position in [low, high]
    ),
    min_size=2, max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(bars=bars, period=st.integers(min_value=1, max_value=30))
def test_atr_non_negative(bars, period):
    lo = np.array([b[0] for b in bars])
    h = lo + np.array([b[1] for b in bars])
    c = lo + (h - lo) * np.array([b[2] for b in bars])
    out = ind.atr(h, lo, c, period)
    assert np.isnan(out[:period]).all()
    assert np.isfinite(out[period:]).all() and (out[period:] >= 0.0).all()


@settings(max_examples=100, deadline=None)
@given(prices=positive_prices, span=st.integers(min_value=2, max_value=40))
def test_ema_matches_talib_on_random_prices(prices, span):
    x = np.array(prices)
    assert_matches_talib(ind.ema(x, span), talib.EMA(x, span), min_valid=0)


# ------------------------------------------------------------------- look-ahead


def test_no_look_ahead():
    df = _load("BTCUSDT").iloc[:320]
    c, h, lo, v = (df[k].to_numpy() for k in ("close", "high", "low", "volume"))
    funcs = {
        "ema": lambda n: ind.ema(c[:n], 12),
        "sma": lambda n: ind.sma(c[:n], 20),
        "rsi": lambda n: ind.rsi(c[:n], 14),
        "atr": lambda n: ind.atr(h[:n], lo[:n], c[:n], 14),
        "macd": lambda n: np.column_stack(ind.macd(c[:n])),
        "volume_z": lambda n: ind.volume_z(v[:n], 20),
        "log_returns": lambda n: ind.log_returns(c[:n]),
    }
    checkpoints = sorted(set(range(0, 45)) | set(range(45, 320, 13)) | {319})
    for name, f in funcs.items():
        full = f(len(c))
        for i in checkpoints:
            # Bit-identical: the prefix computation performs the same float operations.
            assert_array_equal(f(i + 1)[i], full[i], err_msg=f"{name} at {i}")


def _bits(x: float) -> bytes:
    return np.float64(x).tobytes()


@pytest.mark.parametrize("window", [1, 2, 5, 20, 48])
def test_volume_z_last_is_the_arrays_last_value_bit_for_bit(candles, window):
    """The live cycle's scalar form against the vectorised one: every end of the real volumes, and windows
    with NaNs, a flat history (with an inexact mean), zeros, an infinity and a zero-spread window."""
    v = candles["volume"].to_numpy(float)
    cases = [v[:end] for end in range(window + 1, min(len(v), 400))]
    flat = np.full(window + 1, 0.1)
    cases += [flat, np.r_[flat[:-1], 7.0], np.r_[flat[:-1], np.nan], np.zeros(window + 1),
              np.r_[np.nan, v[:window]], np.r_[v[:window], np.inf], np.full(window + 1, np.inf), v[:window]]
    rng = np.random.default_rng(5)
    cases += [rng.lognormal(0, 2, window + 1 + k) for k in range(50)]
    for x in cases:
        with np.errstate(all="ignore"):       # inf - inf in the infinite cases
            want = float(np.asarray(ind.volume_z(x, window))[-1])
        got = ind.volume_z_last(x, window)
        assert _bits(got) == _bits(want) or (math.isnan(got) and math.isnan(want)), (x[-3:], got, want)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(min_value=0, max_value=1e12), st.just(float("nan")), st.sampled_from([0.0, 1.0])),
                min_size=1, max_size=30),
       st.integers(min_value=1, max_value=25))
def test_volume_z_last_equals_the_vectorised_form_on_any_volumes(vals, window):
    x = np.asarray(vals, dtype=float)
    with np.errstate(all="ignore"):
        want = float(np.asarray(ind.volume_z(x, window))[-1])
    got = ind.volume_z_last(x, window)
    assert _bits(got) == _bits(want) or (math.isnan(got) and math.isnan(want))
