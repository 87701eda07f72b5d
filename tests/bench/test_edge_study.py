"""bench/edge_study.py's benchmarks: buy-and-hold is bought once and never rebalanced, and it pays its entry
and exit cost inside every window the study reports (a constant cost factor on the whole curve would cancel)."""
from __future__ import annotations

import pandas as pd
import pytest

from bench import edge_study as es


def _px() -> pd.DataFrame:
    idx = pd.date_range("2022-01-01", periods=5, freq="D", tz="UTC")
    # BTC doubles then halves, B halves then doubles: each ends where it started
    return pd.DataFrame({"BTC": [100.0, 200.0, 100.0, 200.0, 100.0], "B": [100.0, 50.0, 100.0, 50.0, 100.0]},
                        index=idx)


def test_equal_weight_buy_and_hold_is_held_not_rebalanced():
    px = _px()
    eq = es.benchmark_equity(px, cost_bps=0.0)["ew_hold"]
    held = (px / px.iloc[0]).mean(axis=1)           # half the money in each coin, never touched
    assert held.iloc[-1] == pytest.approx(1.0)       # both coins back where they started
    assert eq.iloc[-1] == pytest.approx(held.iloc[-1]), f"ew_hold ends at {eq.iloc[-1]:.4f} (+{eq.iloc[-1]-1:.0%})"
    lo, hi = px.index[0], px.index[-1]
    assert es.summary(es.window_returns(eq, lo, hi))["net_return"] == pytest.approx(0.0)


@pytest.mark.parametrize("name", ["btc_hold", "ew_hold"])
def test_buy_and_hold_pays_its_entry_and_exit_cost_inside_every_window(name):
    px = _px()
    bench = es.benchmark_equity(px, 30.0)
    for lo, hi in ((px.index[0], px.index[-1]), (px.index[1], px.index[3])):
        seg = px.loc[(px.index >= lo) & (px.index <= hi)]
        seg = seg[["BTC"]] if name == "btc_hold" else seg
        gross = float((seg.iloc[-1] / seg.iloc[0]).mean())          # bought at lo's close, equal parts
        net = es.summary(es.window_returns(bench[name], lo, hi))["net_return"]
        assert net == pytest.approx(gross * (1 - 0.003) ** 2 - 1), (name, lo, hi)
