"""The trend model (profile trend): the higher-timeframe mean, its price score, the band (hysteresis) and the
parity of the live window with the backtest's full history, on the bundled real candles."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib
from numpy.lib.stride_tricks import sliding_window_view

from tracer.config import ConfigError, load_settings
from tracer.models import Action
from tracer.sentiment.narrative import NarrativeResult
from tracer.signals.evaluate import EvalParams, decide, evaluate
from tracer.signals.features import feature_table, trend_gap, trend_gap_last
from tracer.signals.gates import GateThresholds
from tracer.signals.scoring import TREND_SCALE, score_table, trend_price_score

BTC_CSV = Path(__file__).resolve().parents[2] / "tracer" / "data" / "bundled" / "candles_1h_BTCUSDT.csv"
YEAR_H = 365 * 24
NO_NEWS = NarrativeResult(score=0.0, count=0, effective_weight=0.0, scorer_id="", latest_age_min=None)


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    return pd.read_csv(BTC_CSV, index_col="timestamp", parse_dates=True)


def trend_params(window_h: float = 240.0, band: float = 0.1) -> EvalParams:
    return EvalParams(gates=GateThresholds(min_quality=1.0, min_conviction=2.0), min_direction_score=band,
                      trend_window_h=window_h)


def test_trend_gap_is_the_log_distance_from_talib_sma(btc):
    c = btc["close"].to_numpy(float)[:2000]
    for n in (24, 240, 480):
        got = trend_gap(c, n)
        ref = np.log(c / talib.SMA(c, timeperiod=n))
        assert np.all(got[:n - 1] == 0.0)                     # not enough history: no trend
        np.testing.assert_allclose(got[n - 1:], ref[n - 1:], rtol=0, atol=1e-12)
    assert np.all(trend_gap(c, 0) == 0.0)                     # window 0: the model is off
    assert np.all(trend_gap(c[:100], 240) == 0.0)             # shorter than the window


def test_the_multi_horizon_gap_is_the_mean_of_the_three_gaps(btc):
    """TB_TREND_ENSEMBLE: the mean of the log gaps from the 120, 240 and 480-bar means (TA-Lib's SMA as the
    reference), 0 until the longest mean holds its bars; the live row and a later window agree with it."""
    c = btc["close"].to_numpy(float)[:3000]
    ws = (120, 240, 480)
    got = trend_gap(c, ws)
    ref = np.mean([np.log(c / talib.SMA(c, timeperiod=n)) for n in ws], axis=0)
    assert np.all(got[:479] == 0.0)
    np.testing.assert_allclose(got[479:], ref[479:], rtol=0, atol=1e-12)
    assert not np.allclose(got[479:], trend_gap(c, 240)[479:], atol=1e-3)     # not the middle window alone
    one = np.zeros(len(c))          # one window: the same bits as the plain gap from one rolling mean
    one[239:] = np.log(c[239:] / sliding_window_view(c, 240).mean(axis=1))
    assert trend_gap(c, (240,)).tolist() == trend_gap(c, 240).tolist() == one.tolist()
    for end in (479, 480, 1500, 3000):
        assert trend_gap_last(c[:end], ws) == pytest.approx(got[end - 1], abs=1e-12)
    for end in (600, 1500, 3000):       # the live agent's 600-bar window
        assert trend_gap(c[end - 600:end], ws)[-1] == pytest.approx(got[end - 1], abs=1e-12)


def test_the_ensemble_windows_and_their_look_back():
    p = EvalParams(gates=GateThresholds(1, 2), trend_window_h=480, trend_ensemble=True)
    assert p.trend_windows == (240, 480, 960) and p.trend_bars == 480
    assert trend_params(480).trend_windows == (480,) and trend_params(0).trend_windows == ()
    s = load_settings({"TB_TREND_ENSEMBLE": "true", "TB_LOOKBACK_BARS": "1000"}, dotenv_path=None)
    assert EvalParams.from_settings(s).trend_windows == (240, 480, 960)
    with pytest.raises(ConfigError, match="TB_TREND_ENSEMBLE.*TB_LOOKBACK_BARS=600"):
        load_settings({"TB_TREND_ENSEMBLE": "true"}, dotenv_path=None)    # the trend profile's 600 bars < 960


def test_trend_gap_of_the_live_window_equals_the_full_history(btc):
    """A rolling mean: the agent's 300-bar window and the backtest's whole series give the same bits."""
    c, h, lo, v = (btc[k].to_numpy(float) for k in ("close", "high", "low", "volume"))
    full = feature_table(h, lo, c, v, YEAR_H, 20, 240)
    for end in (300, 1234, 5000, len(c)):
        w = slice(end - 300, end)
        win = feature_table(h[w], lo[w], c[w], v[w], YEAR_H, 20, 240)
        assert win.trend_gap[-1] == full.trend_gap[end - 1]
        assert win.row(299).trend_gap == full.row(end - 1).trend_gap


def test_price_score_is_the_trend_and_the_band_is_the_direction_threshold():
    gaps = np.array([0.0, 0.005, 0.0101, -0.0101, 0.10, -0.30])
    np.testing.assert_allclose(trend_price_score(gaps), np.tanh(gaps / TREND_SCALE))
    assert trend_price_score([0.10])[0] == pytest.approx(np.tanh(1.0))     # 10% above the mean: 0.76
    n = len(gaps)
    p = trend_params(band=0.1)      # tanh(g / 0.1) >= 0.1  <=>  |g| >= 0.1 * atanh(0.1) = 1.0034%
    t = score_table(np.full(n, 50.0), np.zeros(n), np.zeros(n), np.zeros(n), np.full((n, 3), np.nan),
                    np.full(n, 0.5), np.ones(n), np.zeros(n), np.zeros(n, int), p, 1.0, gaps)
    assert t.direction.tolist() == [0, 0, 1, -1, 1, -1]
    # the oscillators (RSI 50, z 0) would call no direction at all: the price score is the trend's
    np.testing.assert_allclose(t.price, np.tanh(gaps / TREND_SCALE))
    off = score_table(np.full(n, 50.0), np.zeros(n), np.zeros(n), np.zeros(n), np.full((n, 3), np.nan),
                      np.full(n, 0.5), np.ones(n), np.zeros(n), np.zeros(n, int), trend_params(window_h=0), 1.0, gaps)
    assert off.direction.tolist() == [0] * n and np.all(off.price == 0.0)


def test_trend_bars_follow_the_interval():
    assert trend_params(240).trend_bars == 240
    assert EvalParams(gates=GateThresholds(1, 2), interval=timedelta(hours=4), trend_window_h=240).trend_bars == 60
    assert EvalParams(gates=GateThresholds(1, 2), interval=timedelta(days=1), trend_window_h=480).trend_bars == 20
    assert trend_params(0).trend_bars == 0


def _series(closes: np.ndarray) -> pd.DataFrame:
    idx = pd.date_range("2022-01-01", periods=len(closes), freq="h", tz="UTC")
    return pd.DataFrame({"open": closes, "high": closes * 1.002, "low": closes * 0.998, "close": closes,
                         "volume": np.full(len(closes), 100.0)}, index=idx)


def test_hysteresis_up_trend_buys_a_dip_inside_the_band_holds_a_break_sells():
    """300 bars rising 0.1%/bar, then the close is set to points around the 240-bar mean: well above it ->
    buy; a hair below it (inside the band) -> hold (a long is kept); well below -> sell (the long is closed)."""
    base = 100 * np.exp(0.001 * np.arange(300))
    p = trend_params(240, band=0.1)
    df = _series(base)
    assert evaluate("BTC/USD", df, [], df.index[-1] + timedelta(hours=1), p).action is Action.BUY
    mean_prev = base[-240:-1]        # the mean of the last window includes the new close itself

    def at(ratio_to_mean: float) -> Action:
        # solve close = ratio * mean(prev 239 + close) for close
        k = ratio_to_mean
        close = k * mean_prev.sum() / (240 - k)
        c = base.copy()
        c[-1] = close
        d = _series(c)
        sig = evaluate("BTC/USD", d, [], d.index[-1] + timedelta(hours=1), p)
        assert sig.inputs["price_components"]["trend_gap"] == pytest.approx(np.log(k), abs=1e-12)
        return sig.action

    assert at(0.995) is Action.HOLD          # 0.5% below the mean: inside the band, no direction
    assert at(1.005) is Action.HOLD
    # 5% below after one bar: the direction is down, but the gates still apply to it: the one-bar fall is
    # extreme volatility (+2 quality) against a bull regime (+1), quality 2.92 < 4 -> hold
    assert at(0.95) is Action.HOLD
    assert at(0.90) is Action.SELL           # 10% below: the trend turned, quality 3.85 >= 3 (regime sideways)


def test_decide_on_one_row_equals_the_table_row(btc):
    """The live path (decide on one feature row) and the backtest's vectorised table agree in trend mode."""
    c, h, lo, v = (btc[k].to_numpy(float) for k in ("close", "high", "low", "volume"))
    p = trend_params(240, 0.1)
    ft = feature_table(h, lo, c, v, YEAR_H, 20, 240)
    n = len(c)
    t = score_table(ft.rsi, ft.macd_hist_z, ft.ema_spread_z, ft.volume_z, np.column_stack(ft.horizons),
                    ft.annual_vol, ft.participation, np.zeros(n), np.zeros(n, int), p, 1.0, ft.trend_gap)
    acts = set()
    for i in range(300, n, 97):
        sig = decide("BTC/USD", btc.index[i], float(c[i]), ft.row(i), NO_NEWS, p)
        assert int(np.sign({"buy": 1, "sell": -1, "hold": 0}[sig.action.value])) == int(t.action[i])
        assert sig.price_score == pytest.approx(float(t.price[i]), abs=1e-12)
        acts.add(sig.action)
    assert acts == {Action.BUY, Action.SELL, Action.HOLD}


def test_trend_profile_settings_build_trend_params():
    s = load_settings({}, dotenv_path=None)
    p = EvalParams.from_settings(s)
    assert s.profile == "trend" and p.trend_bars == 480 and p.min_direction_score == 0.1
    assert EvalParams.from_settings(load_settings({"TB_PROFILE": "phase1c"}, dotenv_path=None)).trend_bars == 0
