"""Client order ids of a position's protective orders, and the venue's quantity and price grids (pure)."""
from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from tracer.execution.broker import VenueRules, numbered_id
from tracer.models import Order, OrderState, OrderType

# an order in one of these states is over: its client id is never sent again
TERMINAL = (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED)
# the reason a stop is cancelled with when the venue holds more than it covers (a new stop covers all of it)
RESIZED = "resized"
# the reason prefix of a stop the venue cancelled with the position it closed or reduced itself
ENDED_WITH_POSITION = "ended with its position"
# the reason prefix of a stop or target whose id the venue refused as a duplicate and cannot find: it ended there
# unseen (cancelled by hand while the agent was down, out of the venue's history since). Bybit and Alpaca never take
# an id twice: the position's next stop goes out under a new id (no failed try)
ID_SPENT = "id spent on the venue"


def stop_order_id(entry_order_id: str, seq: int = 0) -> str:
    """The venue stop of a position; ``seq`` (:attr:`Position.stop_seq`) counts the stops of that position the
    venue refused or that filled only in part: a re-placed stop gets a new id."""
    return f"{entry_order_id[:33]}-sl" if seq <= 0 else numbered_id(entry_order_id, "sl", seq)


def target_order_id(entry_order_id: str, seq: int = 0) -> str:
    """The venue take-profit of a position (``seq`` as for the stop)."""
    return f"{entry_order_id[:33]}-tp" if seq <= 0 else numbered_id(entry_order_id, "tp", seq)


def of_position(client_order_id: str, entry_order_id: str) -> bool:
    """Whether ``client_order_id`` is one of the exits, stops or targets of the position opened by
    ``entry_order_id`` (those ids are the entry's id, cut to fit, and a tag: ``-x``, ``-sl3``...)."""
    stem, dash, tag = client_order_id.rpartition("-")
    return bool(dash) and tag.rstrip("0123456789") in ("x", "sl", "tp") and entry_order_id.startswith(stem)


def round_to_step(qty: float, step: float) -> float:
    """``qty`` rounded down to a multiple of ``step``, in decimal arithmetic (no 0.30000000000000004)."""
    if step <= 0:
        return qty
    # float noise first (0.015 - 0.005 is 0.009999999999999998): without it a remainder booked by subtraction
    # rounds down a whole step, and the step it loses is left on the venue as an unclosable rest
    d = (Decimal(repr(round(qty, 12))) / Decimal(repr(step))).to_integral_value(rounding=ROUND_DOWN) * \
        Decimal(repr(step))
    return float(d)


def round_to_tick(price: float, tick: float, side_up: bool) -> float:
    """A trigger price on the tick grid, rounded away from the market (a stop never gets closer)."""
    if tick <= 0:
        return price
    q = Decimal(repr(price)) / Decimal(repr(tick))
    q = q.to_integral_value(rounding="ROUND_CEILING" if side_up else "ROUND_FLOOR")
    return float(q * Decimal(repr(tick)))


def rules_reject(qty: float, price: float, rules: VenueRules) -> str | None:
    """Why an order of ``qty`` at about ``price`` cannot be sent (None if it can)."""
    if qty <= 0:
        return f"quantity rounds to zero at step {rules.step_size:g}"
    if qty < rules.min_qty:
        return f"quantity {qty:g} below the venue minimum {rules.min_qty:g}"
    if price > 0 and qty * price < rules.min_notional:
        return f"notional {qty * price:.2f} below the venue minimum {rules.min_notional:g}"
    return None


def conditional(order: Order) -> bool:
    """A stop or a take-profit: on Binance, an order of the algo (conditional) service."""
    return order.type in (OrderType.STOP, OrderType.LIMIT)
