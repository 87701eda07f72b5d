"""validate_bars: every rule fires with its stable prefix; the bundled data passes; it is fast."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.data.replay import bundled_dir, candle_path, load_candles
from tracer.data.validation import REASON_PREFIXES, frame_arrays, sound_rows, validate_bars

H = timedelta(hours=1)
T0 = datetime(2022, 1, 1, tzinfo=timezone.utc)
BUNDLED_SYMBOLS = ["BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD",
                   "ADA/USD", "BNB/USD", "LINK/USD", "AVAX/USD"]


def make_bars(n: int = 100, start: datetime = T0, interval: timedelta = H, seed: int = 0) -> pd.DataFrame:
    """A clean, consistent OHLCV frame of ``n`` bars opening at ``start``."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n))
    volume = rng.uniform(1, 10, n)
    idx = pd.date_range(start, periods=n, freq=interval, tz="UTC", name="ts")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume},
                        index=idx)


def close_of_last(df: pd.DataFrame, interval: timedelta = H) -> datetime:
    return df.index[-1].to_pydatetime() + interval


def check(df: pd.DataFrame, now: datetime | None = None, *, max_staleness=None, min_bars=60):
    return validate_bars(df, close_of_last(df) if now is None else now, H, max_staleness, min_bars)


def prefix(reason: str) -> str:
    return reason.split(":", 1)[0].split(" at ", 1)[0]


def at(hour: int) -> pd.Timestamp:
    return pd.Timestamp(T0) + pd.Timedelta(hours=hour)


# ----------------------------------------------------------------------------- good data

def test_clean_frame_passes():
    assert check(make_bars()) is None


def test_extra_columns_and_column_order_do_not_matter():
    df = make_bars()
    df["trades"] = 1.0
    assert check(df[["volume", "close", "trades", "low", "high", "open"]]) is None


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_any_index_resolution(unit):
    df = make_bars()
    df.index = df.index.as_unit(unit)
    assert check(df) is None
    df2 = df.drop(df.index[[5, 6, 7]])
    assert check(df2) == "gap: 2022-01-01T05:00:00Z -> 2022-01-01T08:00:00Z (3 bars)"


def test_naive_index_is_a_programming_error():
    df = make_bars()
    df.index = df.index.tz_localize(None)
    with pytest.raises(TypeError):
        check(df)


def test_naive_now_is_a_programming_error():
    df = make_bars()
    with pytest.raises(ValueError):
        validate_bars(df, datetime(2022, 1, 5), H, None, 60)


# ----------------------------------------------------------------------------- each rule

def test_nan_price_counts_rows():
    df = make_bars()
    df.iloc[[3, 10, 11], df.columns.get_loc("close")] = np.nan
    df.iloc[10, df.columns.get_loc("open")] = np.nan  # same row twice: still 3 rows
    assert check(df) == "nan_price: 3 rows"


@pytest.mark.parametrize("col,val", [("high", np.inf), ("low", -np.inf), ("open", np.inf), ("close", np.nan)])
def test_inf_counts_as_nan(col, val):
    df = make_bars()
    df.iloc[20, df.columns.get_loc(col)] = val
    assert check(df) == "nan_price: 1 rows"


def test_nan_volume():
    df = make_bars()
    df.iloc[[1, 2], df.columns.get_loc("volume")] = [np.nan, np.inf]
    assert check(df) == "nan_volume: 2 rows"


@pytest.mark.parametrize("col", ["open", "high", "low", "close"])
@pytest.mark.parametrize("val", [0.0, -1.0])
def test_non_positive_price(col, val):
    df = make_bars()
    df.loc[at(5), col] = val
    # keep the bar otherwise consistent so that only this rule can fire first
    assert check(df) == "non_positive_price at 2022-01-01T05:00:00Z"


def test_high_below_low():
    df = make_bars()
    df.loc[at(7), ["high", "low"]] = [90.0, 95.0]
    assert check(df) == "high_below_low at 2022-01-01T07:00:00Z"


def test_ohlc_inconsistent_high_below_close():
    df = make_bars()
    row = df.loc[at(9)]
    df.loc[at(9), "high"] = max(row.open, row.close) * 0.999
    df.loc[at(9), "low"] = min(row.low, df.loc[at(9), "high"])
    assert check(df) == "ohlc_inconsistent at 2022-01-01T09:00:00Z"


def test_ohlc_inconsistent_low_above_open():
    df = make_bars()
    row = df.loc[at(12)]
    df.loc[at(12), "low"] = min(row.open, row.close) * 1.001
    assert check(df) == "ohlc_inconsistent at 2022-01-01T12:00:00Z"


def test_negative_volume_zero_is_fine():
    df = make_bars()
    df.loc[at(3), "volume"] = 0.0
    assert check(df) is None
    df.loc[at(4), "volume"] = -0.5
    assert check(df) == "negative_volume at 2022-01-01T04:00:00Z"


def test_duplicate_ts():
    df = make_bars()
    idx = df.index.tolist()
    idx[6] = idx[5]
    df.index = pd.DatetimeIndex(idx, name="ts")
    assert check(df) == "duplicate_ts at 2022-01-01T05:00:00Z"


def test_out_of_order():
    df = make_bars()
    order = list(range(len(df)))
    order[10], order[11] = order[11], order[10]
    df = df.iloc[order]
    assert check(df) == "out_of_order at 2022-01-01T10:00:00Z"


def test_gap_reports_missing_range():
    df = make_bars()
    df = df.drop([at(5), at(6), at(7)])
    assert check(df) == "gap: 2022-01-01T05:00:00Z -> 2022-01-01T08:00:00Z (3 bars)"


def test_single_missing_bar():
    df = make_bars().drop([at(30)])
    assert check(df) == "gap: 2022-01-02T06:00:00Z -> 2022-01-02T07:00:00Z (1 bars)"


def test_misaligned_step():
    df = make_bars()
    idx = df.index.tolist()
    idx[20] = idx[20] + pd.Timedelta(minutes=30)
    df.index = pd.DatetimeIndex(idx, name="ts")
    assert check(df) == "misaligned at 2022-01-01T20:30:00Z (step 1h30m, interval 1h)"


def test_stale():
    df = make_bars(60)  # last bar opens 2022-01-03T11:00, closes 12:00
    last_close = close_of_last(df)
    assert last_close == datetime(2022, 1, 3, 12, tzinfo=timezone.utc)
    assert check(df, last_close + H) is None  # exactly one interval old: still fresh
    assert check(df, last_close + H + timedelta(seconds=1)) == \
        "stale: last bar closes 2022-01-03T12:00:00Z, 1h1s before now"
    assert check(df, last_close + 4 * H) == "stale: last bar closes 2022-01-03T12:00:00Z, 4h before now"
    assert check(df, last_close + 4 * H, max_staleness=5 * H) is None


def test_future_bar_is_look_ahead():
    df = make_bars(60)
    now = close_of_last(df) - timedelta(minutes=30)
    assert check(df, now) == ("future_bar: last bar closes 2022-01-03T12:00:00Z, "
                              "after now 2022-01-03T11:30:00Z")


def test_insufficient_bars():
    assert check(make_bars(40)) == "insufficient_bars: 40 < 60"
    assert check(make_bars(60)) is None
    assert check(make_bars(1), min_bars=1) is None


def test_empty_frame():
    empty = make_bars(5).iloc[:0]
    assert validate_bars(empty, T0, H, None, 60) == "insufficient_bars: 0 < 60"
    assert validate_bars(empty, T0, H, None, 0) == "insufficient_bars: 0 < 1"


def test_first_problem_wins():
    df = make_bars().drop([at(50)])
    df.iloc[70, df.columns.get_loc("close")] = np.nan
    assert check(df) == "nan_price: 1 rows"
    assert prefix(check(make_bars(30).drop([at(3)]))) == "gap"


def test_reason_prefixes_are_registered():
    reasons = []
    df = make_bars(); df.iloc[1, 0] = np.nan; reasons.append(check(df))
    df = make_bars(); df.iloc[1, 4] = -1; reasons.append(check(df))
    reasons.append(check(make_bars().drop([at(4)])))
    reasons.append(check(make_bars(10)))
    reasons.append(check(make_bars(), close_of_last(make_bars()) + 3 * H))
    for r in reasons:
        assert prefix(r) in REASON_PREFIXES, r


# ----------------------------------------------------------------------------- property

finite_or_not = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0.1, 1e6))


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.tuples(finite_or_not, finite_or_not, finite_or_not, finite_or_not, finite_or_not),
                  min_size=0, max_size=30),
    steps=st.lists(st.integers(-2, 3), min_size=30, max_size=30),
    now_offset_h=st.integers(-3, 6),
    min_bars=st.integers(0, 40),
)
def test_never_raises_and_reason_has_known_prefix(rows, steps, now_offset_h, min_bars):
    n = len(rows)
    ts = np.cumsum(np.array(steps[:n], dtype=np.int64)) if n else np.array([], dtype=np.int64)
    idx = pd.DatetimeIndex(pd.Timestamp(T0) + pd.to_timedelta(ts, unit="h"), name="ts")
    df = pd.DataFrame(np.array(rows, dtype=np.float64).reshape(n, 5),
                      index=idx, columns=["open", "high", "low", "close", "volume"])
    now = T0 + timedelta(hours=int(ts[-1]) if n else 0) + H + now_offset_h * H
    r = validate_bars(df, now, H, None, min_bars)
    assert r is None or prefix(r) in REASON_PREFIXES
    if r is None:  # a passing window really is clean
        v = df.to_numpy()
        assert np.isfinite(v).all() and (v[:, :4] > 0).all() and (v[:, 4] >= 0).all()
        assert (np.diff(ts) == 1).all() and n >= max(min_bars, 1)
        assert df.index[-1] + H <= now


@settings(max_examples=60, deadline=None)
@given(n=st.integers(60, 300), row=st.integers(0, 299), col=st.sampled_from(["open", "high", "low", "close"]))
def test_one_bad_cell_anywhere_is_caught(n, row, col):
    df = make_bars(n, seed=n)
    row %= n
    df.iloc[row, df.columns.get_loc(col)] = np.nan
    assert check(df) == "nan_price: 1 rows"


# ----------------------------------------------------------------------------- bundled data

@pytest.fixture(scope="module")
def bundled_frames() -> dict[str, pd.DataFrame]:
    return {s: load_candles(candle_path(bundled_dir(), s)) for s in BUNDLED_SYMBOLS}


def test_bundled_files_pass_whole(bundled_frames):
    for sym, df in bundled_frames.items():
        assert len(df) == 7296, sym
        assert validate_bars(df, close_of_last(df), H, None, 60) is None, sym


@pytest.mark.parametrize("now", [
    "2021-10-03T12:00:00Z", "2021-11-10T15:00:00Z", "2022-01-21T00:30:00Z",
    "2022-05-10T12:00:00Z", "2022-06-18T21:59:59Z", "2022-08-01T00:00:00Z",
])
def test_bundled_windows_pass(bundled_frames, now):
    now_ts = pd.Timestamp(now)
    for sym, df in bundled_frames.items():
        window = df[df.index + H <= now_ts].tail(256)
        assert validate_bars(window, now_ts.to_pydatetime(), H, None, 60) is None, sym


def test_sound_rows_keeps_each_bar_fit_for_a_broker_whatever_the_window():
    """The bars of a symbol the gap policy skips (a hole, a stale end) still reach a paper broker, one by one:
    only a bar that is bad on its own is left out (NaN, a price <= 0, open/close outside high-low, a volume < 0,
    a time that repeats or goes back)."""
    df = make_bars(10)
    df = df.drop(df.index[3:5])                                  # a hole does not matter here
    df.iloc[0, df.columns.get_loc("close")] = np.nan
    df.iloc[1, df.columns.get_loc("low")] = -1.0
    df.iloc[2, df.columns.get_loc("high")] = df["low"].iloc[2] * 0.9
    df.iloc[3, df.columns.get_loc("volume")] = -1.0
    df = pd.concat([df, df.iloc[[5]], df.iloc[[4]]])             # a repeated time, then one going back
    assert sound_rows(*frame_arrays(df)).tolist() == [False] * 4 + [True] * 4 + [False, False]
    assert sound_rows(np.zeros(0, np.int64), np.zeros((0, 5))).tolist() == []
