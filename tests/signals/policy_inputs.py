"""What the filter tests hand a policy's ``decide``: an ETH/USD signal, a held position, a book and returns."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

import numpy as np

from tracer.models import Action, Position, PositionSide, Regime, Signal
from tracer.risk.limits import Book

T0 = datetime(2022, 1, 10, tzinfo=timezone.utc)
BOOK = Book(equity=100_000.0, cash=100_000.0, day_start_equity=100_000.0, trades_today=0, exposures={})
RET = {"ETH/USD": np.random.default_rng(0).normal(0, 0.01, 500)}


def signal(action: Action, direction: int, **fields: Any) -> Signal:
    """A signal that passes every gate (quality 5, conviction 6, ATR 30) but those ``fields`` change."""
    reg = Regime(label="sideways", trend_score=0.0, volatility="normal", annual_vol=0.5, volume="normal",
                 participation=1.0, confidence=0.5)
    base = Signal(symbol="ETH/USD", ts=T0, price=3000.0, action=action, direction=direction, reason="test",
                  quality=5.0, conviction=6.0, regime=reg, price_score=0.5, narrative=0.0, divergence=0.0,
                  divergence_trigger=0.5, volume_z=0.0, rsi=50.0, atr=30.0, size_fraction=1.0, headline_count=0,
                  scorer_id="")
    return dataclasses.replace(base, **fields)


def held(side: PositionSide) -> Position:
    return Position(agent="x", symbol="ETH/USD", side=side, qty=1.0, entry_price=3000.0,
                    opened_at=datetime(2022, 1, 1, tzinfo=timezone.utc), entry_fee=1.0, stop_loss=2000.0,
                    take_profit=9000.0, trail_pct=0.0, best_price=3000.0, max_hold_s=0.0, entry_order_id="e1")
