"""The typed per-agent sections read the flat variables users set: each field follows its variable, the
profile's values come through, and every futures_* setting the futures agent needs has a field."""
from __future__ import annotations

import dataclasses

from tracer.config import load_settings
from tracer.config.sections import FuturesSection, PaperCosts


def settings(**env: str):
    return load_settings({"TB_ACTIVE_PARAMS_PATH": "/nonexistent/active.json", **env}, dotenv_path=None)


def test_each_field_follows_its_variable():
    s = settings(TB_FUTURES_STOP_ATR_MULT="3", TB_FUTURES_COOLDOWN_H="5", TB_FUTURES_CAPITAL="2500",
                 TB_STOP_ATR_MULT="2.5", TB_TRAIL_PCT="0.03", TB_HYBRID_CAPITAL="777", TB_FEE_BPS="7",
                 TB_FUTURES_FEE_BPS="3",
                 TB_SYMBOLS="BTC/USD,ETH/USD", TB_FUTURES_SYMBOLS="SOL/USD")
    f, h = s.futures, s.hybrid
    assert (f.exits.stop_atr_mult, f.cooldown_h, f.capital, f.symbols) == (3.0, 5.0, 2500.0, ("SOL/USD",))
    assert (h.exits.stop_atr_mult, h.exits.trail_pct, h.capital, h.symbols) == (2.5, 0.03, 777.0,
                                                                                ("BTC/USD", "ETH/USD"))
    assert (h.costs, f.costs) == (PaperCosts(7.0, s.slippage_bps), PaperCosts(3.0, s.slippage_bps))


def test_each_agent_pays_its_venues_fee_by_default():
    """Alpaca charges crypto takers 0.25% at its first volume tier, Binance USD-M futures 0.05% at VIP 0."""
    s = settings()
    assert (s.hybrid.costs.fee_bps, s.futures.costs.fee_bps) == (25.0, 5.0)


def test_profiles_come_through_the_sections():
    trend, seed = settings(TB_PROFILE="trend"), settings(TB_PROFILE="phase1c")
    assert trend.futures.exits.take_profit_atr_mult == 100.0 and seed.futures.exits.take_profit_atr_mult == 3.0
    assert trend.hybrid.max_positions == 9 and seed.hybrid.max_positions == 5


def test_every_futures_variable_has_a_field():
    s = settings()
    flat = {f.name[len("futures_"):] for f in dataclasses.fields(s) if f.name.startswith("futures_")}
    flat -= {"backup_venue"}                 # venue wiring, not the policy or the paper broker
    flat -= {"fee_bps"}                      # under .costs
    named = {f.name for f in dataclasses.fields(FuturesSection)} | {
        "stop_atr_mult", "take_profit_atr_mult", "trail_pct", "max_hold_h"}      # under .exits
    assert flat <= named, flat - named
