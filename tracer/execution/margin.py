"""USD-M perpetual futures arithmetic: isolated margin, liquidation price, funding (pure).

Binance USD-M, isolated margin, one-way mode, one position per symbol:

    LP = (WB + cum - side * qty * entry) / (qty * MMR - side * qty)

with ``side`` +1 for a long and -1 for a short, ``WB`` the isolated wallet balance (the position's
margin), ``MMR`` the maintenance margin rate of the position's bracket and ``cum`` the bracket's
maintenance amount (0 for the first bracket). With ``WB = qty * entry / leverage`` and ``cum = 0``:
long ``LP = entry * (1 - 1/L) / (1 - MMR)``, short ``LP = entry * (1 + 1/L) / (1 + MMR)``.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

FUNDING_HOURS = (0, 8, 16)      # Binance USD-M funding times (UTC), every 8 hours


def initial_margin(qty: float, price: float, leverage: float) -> float:
    return qty * price / leverage


def liquidation_price(side: int, qty: float, entry: float, margin: float, mmr: float, cum: float = 0.0) -> float:
    """Isolated-margin liquidation price (formula above). 0 when a long can never be liquidated."""
    if qty <= 0:
        raise ValueError("qty must be positive")
    lp = (margin + cum - side * qty * entry) / (qty * mmr - side * qty)
    return max(lp, 0.0)


def unrealized_pnl(side: int, qty: float, entry: float, mark: float) -> float:
    return side * (mark - entry) * qty


def funding_payment(side: int, qty: float, mark: float, rate: float) -> float:
    """What the position PAYS at one funding time: ``side * qty * mark * rate``.
    Positive rate: longs pay, shorts receive (a negative payment)."""
    return side * qty * mark * rate


def funding_times(start: datetime, end: datetime) -> list[datetime]:
    """Funding instants ``t`` with ``start < t <= end`` (UTC)."""
    out = []
    t = start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    while t <= end:
        if t > start and t.hour in FUNDING_HOURS:
            out.append(t)
        t += timedelta(hours=1)
    return out


def stop_inside_liquidation(side: int, entry: float, stop: float, liq: float, max_fraction: float) -> tuple[bool, float]:
    """Guard: the stop must sit between entry and the liquidation price, at no more than
    ``max_fraction`` of the liquidation distance. Returns (ok, stop_distance / liquidation_distance)."""
    stop_d = side * (entry - stop)
    liq_d = side * (entry - liq)
    if stop_d <= 0 or liq_d <= 0:
        return False, float("inf")
    ratio = stop_d / liq_d
    return ratio <= max_fraction, ratio
