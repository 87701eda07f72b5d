"""What the study can switch off, as ``TB_NAME=VALUE`` overrides of the settings overlay (pure).

Each component is switched off by the setting that disables it in the agents' own code, so an ablation
runs exactly the code a user would run with that ``--set``. Sentiment is the one driver-level switch: the
backtest reads no headline at all (price-only), which is what a candle folder without ``headlines.csv``
gives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping


class Component(str, Enum):
    SENTIMENT = "sentiment"              # headlines -> narrative
    DIVERGENCE = "divergence"            # narrative vs price divergence (the contrarian quality point)
    REGIME_GATES = "regime_gates"        # extra quality against the regime / in extreme volatility
    CONVICTION_GATE = "conviction_gate"
    CONFIDENCE_SIZING = "confidence_sizing"
    KELLY = "kelly"
    VAR = "var"
    CORRELATION_CAP = "correlation_cap"
    EXPLORATION = "exploration"
    MARKET_FILTER = "market_filter"      # new entries only with the market symbol's trend (TB_MARKET_FILTER)


@dataclass(frozen=True)
class Switch:
    component: Component
    overrides: Mapping[str, str] = field(default_factory=dict)
    price_only: bool = False             # run without headlines
    how: str = ""                        # one line for the report


def switches(agent: str) -> list[Switch]:
    """The off switch of every component for ``agent`` (``hybrid`` or ``futures``)."""
    fut = agent == "futures"
    return [
        Switch(Component.SENTIMENT, {}, True, "no headlines (price-only)"),
        # the trigger is >= 0.6 x the threshold, and |narrative - price| <= 2: 10 never triggers
        Switch(Component.DIVERGENCE, {"TB_DIVERGENCE_THRESHOLD": "10"}, how="TB_DIVERGENCE_THRESHOLD=10"),
        Switch(Component.REGIME_GATES,
               {"TB_BEAR_QUALITY_PENALTY": "0", "TB_EXTREME_VOL_QUALITY_PENALTY": "0",
                **({"TB_FUTURES_COUNTER_REGIME_QUALITY": "0"} if fut else {})},
               how="TB_BEAR_QUALITY_PENALTY=0, TB_EXTREME_VOL_QUALITY_PENALTY=0"
                   + (", TB_FUTURES_COUNTER_REGIME_QUALITY=0" if fut else "")),
        # conviction is clipped to [1, 10]: a gate of 1 passes everything (it also widens the sizing span)
        Switch(Component.CONVICTION_GATE, {"TB_MIN_CONVICTION_SCORE": "1"}, how="TB_MIN_CONVICTION_SCORE=1"),
        Switch(Component.CONFIDENCE_SIZING, {"TB_CONFIDENCE_SIZING": "false"}, how="TB_CONFIDENCE_SIZING=false"),
        Switch(Component.KELLY, {"TB_KELLY_MIN_TRADES": "100000"},
               how="TB_KELLY_MIN_TRADES=100000 (never reached)"),
        Switch(Component.VAR, {"TB_FUTURES_VAR_LIMIT": "10"} if fut else {"TB_PORTFOLIO_VAR_LIMIT": "1"},
               how="TB_FUTURES_VAR_LIMIT=10" if fut else "TB_PORTFOLIO_VAR_LIMIT=1 (100% of equity)"),
        Switch(Component.CORRELATION_CAP, {"TB_MAX_CORRELATION": "1"}, how="TB_MAX_CORRELATION=1"),
        Switch(Component.EXPLORATION, {"TB_EXPLORE_SHARE": "0"}, how="TB_EXPLORE_SHARE=0"),
        Switch(Component.MARKET_FILTER, {"TB_MARKET_FILTER": "none"}, how="TB_MARKET_FILTER=none"),
    ]


def is_noop(sw: Switch, current: Mapping[str, str]) -> bool:
    """True when every override already holds in ``current`` (TB_NAME -> text of the value in force):
    switching the component off changes nothing (e.g. exploration, off by default)."""
    if sw.price_only or not sw.overrides:
        return False
    return all(_same(current.get(k), v) for k, v in sw.overrides.items())


def _same(a: str | None, b: str) -> bool:
    if a is None:
        return False
    try:
        return float(a) == float(b)
    except ValueError:
        return a.strip().lower() == b.strip().lower()


def cost_overrides(mult: float, fee_bps: float, slippage_bps: float, agent: str) -> dict[str, str]:
    """The agent's fee and the slippage scaled by ``mult`` (0, 1, 2 ...)."""
    if agent not in ("hybrid", "futures"):
        raise ValueError(f"unknown agent {agent!r}")
    if mult < 0:
        raise ValueError(f"--costs: a cost multiplier must be >= 0 (got {mult:g})")
    fee_var = "TB_FUTURES_FEE_BPS" if agent == "futures" else "TB_FEE_BPS"
    return {fee_var: repr(fee_bps * mult), "TB_SLIPPAGE_BPS": repr(slippage_bps * mult)}
