"""What a real venue (Alpaca spot, Binance USD-M, Bybit linear) must offer the agents.

Each venue has a thin *client* (``tracer/execution/venues/<name>.py``) over its SDK that speaks this
interface in our domain terms, and translates every venue error into one of the typed errors below.
:class:`tracer.execution.venue_broker.VenueBroker` builds the safety on top of any client: rules
rounding, query-before-resubmit, rate-limit and ban handling, protective stops on the venue, and
reconciliation with the DB. A client holds no trading state of its own: the venue is the truth.

Symbols are ours (``BTC/USD``) on this interface; a client maps them to the venue's (``BTCUSDT``).
Quantities are in base units, prices in USD(T), times timezone-aware UTC.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol

from tracer.execution.broker import VenueRules
from tracer.models import OrderState, PositionSide, Side


# --- errors: every venue error a client raises is one of these ----------------------------------
class VenueError(Exception):
    """Base class. ``code`` is the venue's own error code (e.g. -2019), ``status`` the HTTP status."""

    def __init__(self, message: str, *, code: int | str | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class Ambiguous(VenueError):
    """The request may or may not have reached the venue (timeout, dropped connection, 5xx).
    Reads may be retried; an order POST must be followed by a query by client order id."""


class VenueUnavailable(VenueError):
    """The venue cannot be reached at all (connection refused, DNS, maintenance): fail over if possible.
    Nothing was sent, so nothing needs to be reconciled for this request."""


class RateLimited(VenueError):
    """HTTP 429 (or the venue's equivalent). ``retry_after_s``: how long to wait (Retry-After or a
    conservative default); ``used_weight``: the venue's used-weight header, when it sent one."""

    def __init__(self, message: str, *, retry_after_s: float, used_weight: int | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s
        self.used_weight = used_weight


class IpBanned(VenueError):
    """HTTP 418 (Binance's IP ban): stop all requests to the venue until ``until`` (UTC)."""

    def __init__(self, message: str, *, until: datetime, **kw):
        super().__init__(message, **kw)
        self.until = until


class TimestampDrift(VenueError):
    """The request timestamp fell outside the venue's recvWindow (Binance -1021): resync and retry once."""


class AuthError(VenueError):
    """Bad signature, bad key, or the key lacks the permission: never retried."""


class InsufficientMargin(VenueError):
    """Not enough balance or margin for the order: never retried."""


class OrderRejected(VenueError):
    """A definitive reject of an order (precision, min notional, reduce-only rejected, unknown symbol...).
    Never retried; ``reason`` is recorded."""


class DuplicateClientId(VenueError):
    """The venue already has an order under this client id (Binance -4116, Bybit 110072, Alpaca 422
    40010001): most often our own earlier POST that timed out and was processed late. Not a refusal: the
    order is looked up by its id and tracked."""


# --- what a venue returns --------------------------------------------------------------------------
class VenueOrderType(str, Enum):
    MARKET = "market"
    STOP_MARKET = "stop_market"            # protective stop, reduce-only, triggers on the mark/last price
    TAKE_PROFIT_MARKET = "take_profit_market"


class ForcedClose(str, Enum):
    """Why the venue closed (part of) a position itself: the ``reason`` of a ``forced_closes`` order."""
    LIQUIDATION = "liquidation"            # margin exhausted: the isolated margin of what it closed is lost
    ADL = "adl"                            # auto-deleveraging: closed at a counterparty's bankruptcy price, in profit
    SETTLEMENT = "settlement"              # a delisting / delivery settlement: closed at its price with its fee


@dataclass(frozen=True, slots=True)
class OrderSpec:
    client_order_id: str
    symbol: str
    side: Side
    qty: float
    type: VenueOrderType = VenueOrderType.MARKET
    reduce_only: bool = False
    stop_price: float | None = None        # trigger price of STOP_MARKET / TAKE_PROFIT_MARKET


@dataclass(frozen=True, slots=True)
class VenueOrder:
    client_order_id: str
    symbol: str
    side: Side
    qty: float
    filled_qty: float
    avg_price: float | None
    state: OrderState                      # SUBMITTED (working), PARTIALLY_FILLED, FILLED, CANCELED, REJECTED
    type: VenueOrderType = VenueOrderType.MARKET
    reduce_only: bool = False
    stop_price: float | None = None
    venue_order_id: str = ""
    updated_at: datetime | None = None
    reason: str | None = None              # why it was rejected/canceled/expired, when the venue says
    fee: float | None = None               # its fees, where the venue reports them with it (forced closes)
    fee_asset: str = "USDT"                # what ``fee`` (its USD(T) value) was paid in
    # a stop / target whose trigger condition was met and whose order the venue has not finished placing
    # (Binance algo TRIGGERING / TRIGGERED, Bybit Triggered): normally for milliseconds, not for minutes
    triggered: bool = False
    # the venue says it ended (Binance algo FINISHED) but its own triggered order could not be read: what it
    # filled is its trades (``fills``), read before it is judged
    ended_unread: bool = False


# the assets a futures wallet balance is counted in: a fee paid in any other (Binance's BNB fee discount) leaves
# that wallet untouched, though it is booked as a fee at its USD(T) value
WALLET_ASSETS = frozenset({"USDT", "USDC", "BUSD", "FDUSD", "USD"})


@dataclass(frozen=True, slots=True)
class VenueFill:
    client_order_id: str
    symbol: str
    side: Side
    qty: float
    price: float
    fee: float                             # in USD(T); converted by the client if the venue charges otherwise
    ts: datetime
    trade_id: str
    realized_pnl: float = 0.0              # futures venues report it per fill; 0 for spot
    order_id: str = ""                     # the venue's id of the order the trade belongs to
    reason: str | None = None              # a ForcedClose value when the venue made the trade itself
    fee_asset: str = "USDT"                # what the venue took the fee in (``fee`` is its USD(T) value)


@dataclass(frozen=True, slots=True)
class VenuePosition:
    symbol: str
    side: PositionSide
    qty: float                             # > 0
    entry_price: float
    leverage: float = 1.0
    liquidation_price: float | None = None
    margin: float = 0.0                    # isolated margin (futures); 0 for spot
    unrealized_pnl: float = 0.0
    mark_price: float | None = None


@dataclass(frozen=True, slots=True)
class VenueBalance:
    wallet: float                          # cash / wallet balance (USD or USDT)
    available: float                       # what new orders can use
    equity: float                          # wallet + unrealised P&L (futures); cash + positions at market (spot)


@dataclass(frozen=True, slots=True)
class FundingPayment:
    symbol: str
    ts: datetime
    amount: float                          # what we paid (> 0) or received (< 0)
    ref: str = ""                          # the venue's id of the payment (booked once by it)


class VenueClient(Protocol):
    """A venue, in our terms. Every method may raise one of the errors above, and only those."""
    name: str                              # "alpaca", "binance", "bybit"
    base_url: str
    is_test_venue: bool                    # paper / testnet endpoint (or a local URL, for the tests)
    supports_venue_stops: bool             # protective STOP_MARKET / TAKE_PROFIT_MARKET rest on the venue
    # the margin a position reports (VenuePosition.margin) is its isolated wallet, which pays its funding
    # (Binance); False where it is the initial margin (Bybit positionIM) or there is none (spot)
    funding_in_margin: bool

    def server_time(self) -> datetime: ...
    def sync_time(self) -> float: ...      # resync the clock offset with the venue; returns the offset in ms
    def rules(self, symbol: str) -> VenueRules: ...
    def place_order(self, spec: OrderSpec) -> VenueOrder: ...
    # ``conditional``: True for a stop / take-profit, False for a market order, None when the caller does not
    # know (a venue with two order services, Binance's, then asks only the right one)
    def get_order(self, symbol: str, client_order_id: str,
                  conditional: bool | None = None) -> VenueOrder | None: ...   # None: the venue never saw it
    def cancel_order(self, symbol: str, client_order_id: str,
                     conditional: bool | None = None) -> VenueOrder | None: ...  # None: unknown / already gone
    def open_orders(self, symbol: str | None = None) -> list[VenueOrder]: ...
    def fills(self, symbol: str, client_order_id: str, conditional: bool | None = None) -> list[VenueFill]: ...
    def positions(self) -> list[VenuePosition]: ...
    def balance(self) -> VenueBalance: ...
    # futures only (a spot client implements them as no-ops / empty)
    def prepare_symbol(self, symbol: str, leverage: int) -> None: ...   # isolated margin + leverage, idempotent
    def funding(self, symbol: str, since: datetime) -> list[FundingPayment]: ...


# the URL classes live with the configuration (a leaf); imported here for the venue code
from tracer.config import TEST_HOSTS, is_local_url, is_test_url  # noqa: E402,F401
