"""Hybrid entry sizing: with TB_RISK_PER_TRADE (the trend profile: 0.6%), the notional whose loss at the ATR
stop is that share of equity (volatility-targeted), never above the fixed share's cap; at 0 (phase1c,
conservative) a fixed share of equity."""
from __future__ import annotations

from dataclasses import replace

import pytest

from tracer.agents.hybrid import HybridPolicy
from tracer.config import load_settings
from tracer.models import Action

from test_exploration import book, returns, signal


def _policy(**env: str) -> HybridPolicy:
    base = {"TB_ACTIVE_PARAMS_PATH": "/nonexistent/active.json", "TB_PROFILE": "trend", **env}
    return HybridPolicy(load_settings(base, dotenv_path=None))


def _entry(policy: HybridPolicy, atr: float, size_fraction: float = 1.0):
    sig = replace(signal(action=Action.BUY, quality=5.0, conviction=6.0), atr=atr, size_fraction=size_fraction)
    d = policy.decide(sig, None, book(), returns("BTC/USD"))
    assert d.decision == "enter", d.reason
    return d.intent.sizing


@pytest.mark.parametrize("env", [{"TB_RISK_PER_TRADE": "0"}, {"TB_PROFILE": "phase1c"}, {"TB_PROFILE": "conservative"}])
def test_off_is_a_fixed_share_of_equity_whatever_the_volatility(env):
    p = _policy(**env)
    assert p.s.hybrid.risk_per_trade == 0.0
    for atr in (200.0, 400.0, 800.0):
        z = _entry(p, atr)
        assert z["notional"] == pytest.approx(10_000.0)         # 10% of 100,000
        assert "risk_notional" not in z


def test_the_trend_profile_targets_volatility():
    p = _policy()
    assert p.s.hybrid.risk_per_trade == 0.006
    # stop 8 ATR = 6,400 on 40,000 (16%): 0.6% of 100,000 lost at the stop -> 3,750 notional
    assert _entry(p, 800.0)["notional"] == pytest.approx(3_750.0)


def test_risk_per_trade_sizes_by_the_stop_distance():
    p = _policy(TB_RISK_PER_TRADE="0.004")
    # stop 8 ATR = 3,200 on 40,000 (8%): 0.4% of 100,000 lost at the stop -> 5,000 notional
    z = _entry(p, 400.0)
    assert z["risk_notional"] == pytest.approx(5_000.0)
    assert z["notional"] == pytest.approx(5_000.0)
    assert z["risk_per_trade"] == 0.004
    assert _entry(p, 800.0)["notional"] == pytest.approx(2_500.0)               # twice the volatility: half
    assert _entry(p, 400.0, size_fraction=0.5)["notional"] == pytest.approx(2_500.0)   # confidence still scales
    # a quiet market asks for more than the fixed share: capped at TB_MAX_POSITION_PCT of equity
    assert _entry(p, 100.0)["notional"] == pytest.approx(10_000.0)


def test_risk_per_trade_is_validated_by_name():
    from tracer.config import ConfigError
    with pytest.raises(ConfigError, match="TB_RISK_PER_TRADE"):
        _policy(TB_RISK_PER_TRADE="0.5")
