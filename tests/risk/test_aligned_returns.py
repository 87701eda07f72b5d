"""The returns the correlation cap and VaR compare line up by time: a hole the gap policy accepts in one symbol
(TB_MAX_GAP_BARS, an exchange's maintenance hour) must not pair its returns with another symbol's of other hours."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from envs import agent_env
from tracer.agents.bar_processing import cycle_returns
from tracer.config import load_settings
from tracer.data.replay import ReplayFeed
from tracer.risk.correlation import aligned_returns, correlation
from tracer.risk.limits import Book, Candidate, RiskLimits, check_entry

H = 3_600_000_000_000
BUNDLED = Path(__file__).resolve().parents[2] / "tracer" / "data" / "bundled"
NOW = pd.Timestamp("2022-02-01T00:00:00Z")


def test_without_a_hole_the_returns_are_the_rows_returns():
    ts = np.arange(10, dtype=np.int64) * H
    c = np.exp(np.linspace(0, 1, 10) ** 2)
    assert np.array_equal(aligned_returns(ts, c, int(ts[-1]), H, 9), np.diff(np.log(c)))


def test_a_hole_is_nan_on_both_sides_and_the_rest_keeps_its_hour():
    ts = np.arange(10, dtype=np.int64) * H
    c = np.arange(1.0, 11.0)
    keep = np.ones(10, bool)
    keep[4] = False                                   # the bar opening at hour 4 is missing
    got = aligned_returns(ts[keep], c[keep], int(ts[-1]), H, 9)
    want = np.diff(np.log(c))
    want[[3, 4]] = np.nan                             # 3->4 and 4->5 cannot be computed
    np.testing.assert_array_equal(got, want)
    # a window shorter than the rows: only the last slots; a latest bar missing: NaN at the end
    np.testing.assert_array_equal(aligned_returns(ts, c, int(ts[-1]), H, 3), np.diff(np.log(c[-4:])))
    assert np.isnan(aligned_returns(ts[:-1], c[:-1], int(ts[-1]), H, 3)[-1])
    # a row off the hour grid is not placed in a slot
    assert np.isnan(aligned_returns(ts + H // 2, c, int(ts[-1]) + H, H, 3)).all()


def _feed(tmp: Path, hole: bool, s) -> ReplayFeed:
    d = tmp / ("hole" if hole else "full")
    d.mkdir()
    (d / "candles_1h_BTCUSDT.csv").write_text((BUNDLED / "candles_1h_BTCUSDT.csv").read_text())
    lines = (BUNDLED / "candles_1h_ETHUSDT.csv").read_text().splitlines(keepends=True)
    if hole:        # ETH without the 6 bars that open 40 to 35 hours before NOW (the default TB_MAX_GAP_BARS)
        first = (NOW - pd.Timedelta(hours=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
        i = next(k for k, ln in enumerate(lines) if ln.startswith(first))
        lines = lines[:i] + lines[i + 6:]
    (d / "candles_1h_ETHUSDT.csv").write_text("".join(lines))
    return ReplayFeed(["BTC/USD", "ETH/USD"], d, lookback=s.lookback_bars, min_bars=s.min_bars,
                      max_gap_bars=s.max_gap_bars)


@pytest.mark.parametrize("hole", [False, True])
def test_an_accepted_hole_does_not_open_a_way_past_the_correlation_cap(tmp_path, hole):
    s = load_settings(environ=agent_env(tmp_path), dotenv_path=None)
    snap = _feed(tmp_path, hole, s).snapshot(NOW.to_pydatetime())
    assert set(snap.bars) == {"BTC/USD", "ETH/USD"}                      # the hole is accepted: both evaluated
    assert any("gap accepted" in n for n in snap.notes.values()) is hole
    returns = cycle_returns(snap.bars, NOW.to_pydatetime(), timedelta(hours=1), s.lookback_bars)
    assert {len(r) for r in returns.values()} == {s.lookback_bars - 1}
    both = pd.concat({sym: b["close"] for sym, b in snap.bars.items()}, axis=1, join="inner").tail(s.lookback_bars)
    rho = correlation(np.diff(np.log(both["ETH/USD"].to_numpy())), np.diff(np.log(both["BTC/USD"].to_numpy())))
    assert rho > s.max_correlation                                       # the hours both have: ETH ~ BTC
    book = Book(equity=100_000.0, cash=90_000.0, day_start_equity=100_000.0, trades_today=0,
                exposures={"BTC/USD": 10_000.0})                         # a BTC long is open
    eth = float(snap.bars["ETH/USD"]["close"].iloc[-1])
    rd = check_entry(Candidate("ETH/USD", eth, +1, 1.0, returns), book, RiskLimits.from_settings(s))
    assert rd.rule == "correlation" and rd.detail["rho"] == pytest.approx(rho, abs=0.02)
