"""Profiles (``TB_PROFILE``): defaults for a group of variables; a variable set explicitly wins."""
from __future__ import annotations

from typing import Any

# Profiles: defaults for a group of variables; each profile sets every variable marked profile=True.
# The default is trend, the one the walk-forward study chose (README "Decision model"); phase1c is the
# seed's ultra-aggressive set (many trades) and conservative its cautious one, both still selectable.
PROFILES: dict[str, dict[str, Any]] = {
    "conservative": {
        "min_signal_quality": 5.0,
        "min_conviction_score": 6.0,
        "max_trades_per_day": 4,
        "confidence_sizing": False,
        "trend_window_h": 0.0,
        "market_filter": "none",
        "lookback_bars": 256,
        "min_direction_score": 0.1,
        "stop_atr_mult": 2.0,
        "take_profit_atr_mult": 4.0,
        "trail_pct": 0.05,
        "max_hold_h": 48.0,
        "max_positions": 5,
        "portfolio_var_limit": 0.02,
        "kelly_min_trades": 20,
        "risk_per_trade": 0.0,
        "futures_stop_atr_mult": 2.0,
        "futures_take_profit_atr_mult": 3.0,
        "futures_trail_pct": 0.04,
        "futures_max_hold_h": 24.0,
        "futures_vol_stop_mult": 3.0,
        "futures_cooldown_h": 4.0,
        "futures_max_leverage": 10.0,
        "futures_max_trades_per_day": 8,
    },
    "phase1c": {
        "min_signal_quality": 1.0,
        "min_conviction_score": 2.0,
        "max_trades_per_day": 8,
        "confidence_sizing": True,
        "trend_window_h": 0.0,
        "market_filter": "none",
        "lookback_bars": 256,
        "min_direction_score": 0.1,
        "stop_atr_mult": 2.0,
        "take_profit_atr_mult": 4.0,
        "trail_pct": 0.05,
        "max_hold_h": 48.0,
        "max_positions": 5,
        "portfolio_var_limit": 0.02,
        "kelly_min_trades": 20,
        "risk_per_trade": 0.0,
        "futures_stop_atr_mult": 2.0,
        "futures_take_profit_atr_mult": 3.0,
        "futures_trail_pct": 0.04,
        "futures_max_hold_h": 24.0,
        "futures_vol_stop_mult": 3.0,
        "futures_cooldown_h": 4.0,
        "futures_max_leverage": 10.0,
        "futures_max_trades_per_day": 8,
    },
    # the default: the higher-timeframe trend model with exits that let a trend run; every value below was
    # chosen on walk-forward training windows only (docs/study/edge.md, bench/edge_study.py)
    "trend": {
        "min_signal_quality": 1.0,
        "min_conviction_score": 2.0,
        "max_trades_per_day": 4,
        "confidence_sizing": True,
        "trend_window_h": 480.0,            # the 20-day mean (round 12; 240 h before)
        "market_filter": "BTC/USD",         # new longs only while BTC is above its own 20-day mean (round 12)
        "lookback_bars": 600,
        "min_direction_score": 0.1,         # band: about 1% from the mean before a direction is called
        "stop_atr_mult": 8.0,
        "take_profit_atr_mult": 100.0,      # no near target: the trend flip or the stop closes the position
        "trail_pct": 0.0,
        "max_hold_h": 0.0,
        "max_positions": 9,
        "portfolio_var_limit": 0.06,
        "kelly_min_trades": 100000,         # half-Kelly on the trade history cost Sharpe in every fold: off
        "risk_per_trade": 0.006,            # hybrid: volatility-targeted size, 0.6% of equity at the stop (round 13)
        "futures_stop_atr_mult": 8.0,
        "futures_take_profit_atr_mult": 100.0,
        "futures_trail_pct": 0.0,
        "futures_max_hold_h": 0.0,
        "futures_vol_stop_mult": 0.0,
        "futures_cooldown_h": 24.0,
        "futures_max_leverage": 3.0,
        "futures_max_trades_per_day": 4,
    },
}

ALL_SYMBOLS = "BTC/USD,ETH/USD,SOL/USD,XRP/USD,DOGE/USD,ADA/USD,BNB/USD,LINK/USD,AVAX/USD"
