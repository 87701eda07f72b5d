"""The live cycle's features (feature_row: rolling windows over the last bars only) against the last row of the
vectorised table the backtest reads, on real candles with every window length the agents use and on short,
constant and gapped series."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tracer.signals.features import FeatureRow, feature_row, feature_table

BUNDLED = Path(__file__).resolve().parents[2] / "tracer" / "data" / "bundled"
YEAR_H = 365 * 24


def same(a: FeatureRow, b: FeatureRow) -> None:
    assert len(a.horizon_scores) == len(b.horizon_scores)
    for name in ("volume_z", "rsi", "macd_hist_z", "ema_spread_z", "atr", "annual_vol", "participation", "trend_gap"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-9, abs=1e-12, nan_ok=True), name
    np.testing.assert_allclose(a.horizon_scores, b.horizon_scores, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("coin", ["BTC", "DOGE", "AVAX"])
@pytest.mark.parametrize("trend", [0, 240, 480, (120, 240, 480)])
def test_the_live_row_equals_the_tables_last_row_on_real_candles(coin, trend):
    df = pd.read_csv(BUNDLED / f"candles_1h_{coin}USDT.csv")
    c, h, lo, v = (df[k].to_numpy(float) for k in ("close", "high", "low", "volume"))
    for end in (61, 170, 300, 600, 2345, len(c)):
        w = slice(max(0, end - 600), end)
        table = feature_table(h[w], lo[w], c[w], v[w], YEAR_H, 20, trend)
        same(feature_row(h[w], lo[w], c[w], v[w], YEAR_H, 20, trend), table.row(table.n - 1))


@pytest.mark.parametrize("n", [1, 2, 3, 25, 26, 51, 52, 167, 168, 169])
def test_short_and_degenerate_series(n):
    rng = np.random.default_rng(n)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    v = rng.uniform(1, 5, n)
    for close, vol in ((c, v), (np.full(n, 50.0), np.full(n, 3.0)), (c, np.zeros(n))):
        table = feature_table(close * 1.01, close * 0.99, close, vol, YEAR_H, 20, 48)
        same(feature_row(close * 1.01, close * 0.99, close, vol, YEAR_H, 20, 48), table.row(n - 1))


def test_one_score_table_for_many_symbols_gives_each_symbols_own_signal():
    """decide_many (the live cycle: all symbols in one table) == evaluate of each symbol alone, field for field."""
    from datetime import timedelta

    from tracer.config import load_settings
    from tracer.signals.evaluate import EvalParams, decide_many, evaluate, prepare

    s = load_settings({"TB_ACTIVE_PARAMS_PATH": "/nonexistent.json", "TB_PROFILE": "phase1c"}, dotenv_path=None)
    p = EvalParams.from_settings(s, timedelta(hours=1))
    frames = {c: pd.read_csv(BUNDLED / f"candles_1h_{c}USDT.csv", index_col="timestamp", parse_dates=True)
              for c in ("BTC", "ETH", "DOGE", "ADA")}
    for end in (400, 3000, 7000):
        now = frames["BTC"].index[end - 1] + timedelta(hours=1)
        bars = {c: f.iloc[end - 256:end] for c, f in frames.items()}
        many = decide_many([prepare(c, b, [], now, p) for c, b in bars.items()], p)
        for sig, (c, b) in zip(many, bars.items()):
            assert sig == evaluate(c, b, [], now, p)


def test_ohlcv_columns_are_the_frames_columns_whatever_their_types():
    """The live cycle's one-conversion read of a candle frame gives each column's values, contiguous, as the
    per-column read does; a frame with other column types (an int volume, a text column) falls back to it."""
    from tracer.signals.evaluate import ohlcv_columns

    df = pd.read_csv(BUNDLED / "candles_1h_ETHUSDT.csv").iloc[-600:].set_index("timestamp")
    names = ("open", "high", "low", "close", "volume")
    for frame in (df, df[list(reversed(names))], df.assign(volume=df["volume"].round().astype(int), note="x")):
        got = ohlcv_columns(frame)
        for name, arr in zip(names, got):
            assert arr.dtype == np.float64 and arr.flags["C_CONTIGUOUS"]
            assert np.array_equal(arr, frame[name].to_numpy(dtype=float)), name
