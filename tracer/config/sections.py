"""Typed per-agent views of the flat settings: what each agent's policy, broker and wiring read, by name and
without its prefix (``s.futures.exits.stop_atr_mult`` for ``TB_FUTURES_STOP_ATR_MULT``). The variables stay
flat in ``.env`` (one name each, as users set them); a section is built from them, never set on its own."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Exits:
    """The protective bracket an entry gets, in ATRs of its signal bar (0 = off for the last three)."""
    stop_atr_mult: float
    take_profit_atr_mult: float
    trail_pct: float
    max_hold_h: float


@dataclass(frozen=True)
class PaperCosts:
    """What the simulated brokers charge: fee and slippage, basis points per side."""
    fee_bps: float
    slippage_bps: float


@dataclass(frozen=True)
class HybridSection:
    """The spot agent (Alpaca or the paper spot broker)."""
    capital: float
    symbols: tuple[str, ...]
    exits: Exits
    costs: PaperCosts
    max_positions: int
    max_trades_per_day: int
    exit_on_sell_signal: bool
    risk_per_trade: float       # 0: a fixed share of equity per entry
    strength_top_k: int = 0     # relative-strength filter: new longs only among the K strongest (0: off)
    decision_every_h: int = 0   # entries and signal exits only on bars closing at a multiple of this (0: every bar)


@dataclass(frozen=True)
class FuturesSection:
    """The perpetuals agent (Binance USD-M, Bybit, or the paper futures broker)."""
    capital: float
    symbols: tuple[str, ...]
    exits: Exits
    costs: PaperCosts
    max_leverage: float
    max_positions: int
    max_trades_per_day: int
    risk_per_trade: float
    max_notional: float
    max_notional_pct: float
    daily_loss_limit_pct: float
    var_limit: float
    cooldown_h: float
    counter_regime_quality: float
    market_filter: bool
    vol_stop_mult: float
    mmr: float                  # maintenance margin rate of the paper broker's liquidation price
    funding_rate: float         # per 8 hours, paper broker
    liq_guard: float
    strength_top_k: int = 0     # new longs only among the K strongest, new shorts among the K weakest (0: off)


def hybrid_section(s: Any) -> HybridSection:
    return HybridSection(
        capital=s.hybrid_capital, symbols=tuple(s.symbols),
        exits=Exits(s.stop_atr_mult, s.take_profit_atr_mult, s.trail_pct, s.max_hold_h),
        costs=PaperCosts(s.fee_bps, s.slippage_bps), max_positions=s.max_positions,
        max_trades_per_day=s.max_trades_per_day, exit_on_sell_signal=s.exit_on_sell_signal,
        risk_per_trade=s.risk_per_trade, strength_top_k=s.strength_top_k,
        decision_every_h=s.decision_every_h)


def futures_section(s: Any) -> FuturesSection:
    return FuturesSection(
        capital=s.futures_capital, symbols=tuple(s.futures_symbols),
        exits=Exits(s.futures_stop_atr_mult, s.futures_take_profit_atr_mult, s.futures_trail_pct,
                    s.futures_max_hold_h),
        costs=PaperCosts(s.futures_fee_bps, s.slippage_bps), max_leverage=s.futures_max_leverage,
        max_positions=s.futures_max_positions, max_trades_per_day=s.futures_max_trades_per_day,
        risk_per_trade=s.futures_risk_per_trade, max_notional=s.futures_max_notional,
        max_notional_pct=s.futures_max_notional_pct, daily_loss_limit_pct=s.futures_daily_loss_limit_pct,
        var_limit=s.futures_var_limit, cooldown_h=s.futures_cooldown_h,
        counter_regime_quality=s.futures_counter_regime_quality, market_filter=s.futures_market_filter,
        vol_stop_mult=s.futures_vol_stop_mult, mmr=s.futures_mmr, funding_rate=s.futures_funding_rate,
        liq_guard=s.futures_liq_guard, strength_top_k=s.futures_strength_top_k)
