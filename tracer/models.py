"""Typed domain objects shared by every part of Tracer Bullet.

All are frozen dataclasses: a value once built never changes, so a Signal
written to the DB is exactly the Signal that drove the decision.
Times are timezone-aware UTC ``datetime`` objects everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Mapping



# the agents, in one place (their names are the DB's ``agent`` column, the CLI's --agent, the log files' names)
AGENTS: tuple[str, ...] = ("hybrid", "futures")

class Side(str, Enum):
    BUY = "buy"
    SELL = "sell"


class PositionSide(str, Enum):
    LONG = "long"
    SHORT = "short"


class OrderType(str, Enum):
    MARKET = "market"
    STOP = "stop"
    LIMIT = "limit"


class OrderState(str, Enum):
    NEW = "new"                      # written to the DB, not yet sent to the broker
    SUBMITTED = "submitted"          # accepted by the broker, waiting for a fill
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"

    @property
    def is_open(self) -> bool:
        return self in (OrderState.NEW, OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED)


class RunStatus(str, Enum):
    """A cycle's ``runs.status`` (the health check counts the cycles that are not ``ok``)."""
    OK = "ok"
    NO_DATA = "no_data"      # every symbol skipped for its bars (an outage): the cycle decided nothing


class Action(str, Enum):
    """What the evaluation recommends for a symbol."""
    BUY = "buy"      # bullish entry (long)
    SELL = "sell"    # bearish entry (short for futures; exit signal for spot)
    HOLD = "hold"    # no trade


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV candle. ``ts`` is the bar's open time (UTC); it closes at ts + interval."""
    symbol: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class Headline:
    """A news headline as published. ``id`` is stable across restarts (hash of source+title+time)."""
    id: str
    published_at: datetime
    source: str
    title: str
    url: str = ""


@dataclass(frozen=True, slots=True)
class Score:
    """A sentiment score of one text: value in [-1, 1], label, and which scorer made it."""
    value: float
    label: str          # positive / negative / neutral
    scorer_id: str      # e.g. "vader-3.3.2", "finbert:/models/finbert"


@dataclass(frozen=True, slots=True)
class ScoredHeadline:
    headline: Headline
    score: Score


@dataclass(frozen=True, slots=True)
class Regime:
    """Market regime: trend label x volatility x volume, with a data-derived confidence in [0, 1]."""
    label: str            # strong_bull, bull, sideways, bear, strong_bear
    trend_score: float    # combined multi-horizon trend score in [-1, 1]
    volatility: str       # low, normal, high, extreme
    annual_vol: float     # annualised volatility of log returns
    volume: str           # low, normal, high
    participation: float  # recent volume / longer-run volume
    confidence: float     # [0, 1]
    horizon_scores: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Signal:
    """The full outcome of evaluating one symbol at one time: every input, score and the decision."""
    symbol: str
    ts: datetime                    # bar time the signal is for (close of the last bar used)
    price: float                    # last close
    action: Action                  # decision
    direction: int                  # +1 bullish, -1 bearish, 0 none
    reason: str                     # human-readable reason of the decision
    quality: float                  # signal quality 0..10
    conviction: float               # conviction 1..10
    regime: Regime
    price_score: float
    narrative: float
    divergence: float
    divergence_trigger: float
    volume_z: float
    rsi: float
    atr: float
    size_fraction: float            # confidence-based fraction of the max position (0 if no trade)
    headline_count: int
    scorer_id: str
    gates: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)
    market_ok: bool = True          # the market filter allows a new entry in ``direction`` (exits: always)
    market_side: int = 0            # the market filter's symbol +1 above its mean (by the band), -1 below, else 0
    stronger: int = -1              # symbols evaluated at this bar with a higher trend gap (-1: unknown)
    weaker: int = -1                # ... with a lower one (the relative-strength filter reads both)


@dataclass(frozen=True, slots=True)
class Order:
    client_order_id: str
    agent: str
    symbol: str
    side: Side
    qty: float
    type: OrderType = OrderType.MARKET
    reduce_only: bool = False
    stop_price: float | None = None
    limit_price: float | None = None
    leverage: float = 1.0
    purpose: str = "entry"           # entry / exit
    reason: str = ""
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Fill:
    client_order_id: str
    symbol: str
    side: Side
    qty: float
    price: float
    fee: float
    ts: datetime
    liquidity: str = "taker"


@dataclass(frozen=True, slots=True)
class Position:
    """An open position with its protective levels (managed by the broker in paper mode)."""
    agent: str
    symbol: str
    side: PositionSide
    qty: float
    entry_price: float
    opened_at: datetime
    entry_fee: float
    stop_loss: float
    take_profit: float
    trail_pct: float                  # trailing stop distance as a fraction of the best price; 0 = off
    best_price: float                 # highest (long) / lowest (short) price seen since entry
    max_hold_s: float                 # time stop in seconds; 0 = off
    entry_order_id: str
    signal_id: int | None = None
    leverage: float = 1.0
    margin: float = 0.0
    liquidation_price: float | None = None
    funding_paid: float = 0.0         # funding paid so far (negative when received)
    entry_atr: float = 0.0            # ATR at entry (volatility stop)
    # venue brokers: exits and stops sent for this position that ended without closing it (a partial or
    # refused exit, a refused or partly filled stop); the next one goes out under a new client id
    exit_seq: int = 0
    stop_seq: int = 0


@dataclass(frozen=True, slots=True)
class Trade:
    """One closed round trip."""
    agent: str
    symbol: str
    side: PositionSide
    qty: float
    entry_ts: datetime
    entry_price: float
    exit_ts: datetime
    exit_price: float
    fees: float
    funding: float
    pnl: float                       # net of fees and funding
    exit_reason: str
    entry_order_id: str
    exit_order_id: str
    leverage: float = 1.0
    signal_id: int | None = None

    @property
    def return_pct(self) -> float:
        """The trade's return on the capital it tied up: P&L over the entry notional divided by the leverage
        (the isolated margin of a futures trade, the notional of a spot one); 0 when that basis is 0. The one
        trade-return formula: the DB, the backtest, the risk book and the notifications all use it."""
        basis = self.entry_price * self.qty / max(self.leverage, 1.0)
        return self.pnl / basis if basis else 0.0
