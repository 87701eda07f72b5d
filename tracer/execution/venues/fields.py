"""Numbers and times in a venue's answers, read one way for every venue client.

A venue answers in JSON strings; a garbled answer (``"abc"``, ``NaN``, ``1e999``, a list ...) must never
become a NaN quantity or price in the broker. :func:`finite` and :func:`required` raise ValueError on it,
which the clients turn into :class:`tracer.execution.venue.Ambiguous`; :func:`lenient` is for fields whose
absence or garbage only means "not said" (a header, a rate limit).
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from decimal import ROUND_FLOOR, Decimal
from typing import Any

__all__ = ["finite", "required", "lenient", "utc_from_ms", "format_step"]


def utc_from_ms(ms: Any) -> datetime | None:
    """Epoch milliseconds as an aware UTC time; None for 0, absent, garbage or a time no calendar has."""
    try:
        v = int(ms)
        return datetime.fromtimestamp(v / 1000, tz=timezone.utc) if v > 0 else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def lenient(x: Any, default: float = 0.0) -> float:
    """``float(x)``, or ``default`` when it is not a number."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return default


def finite(x: Any, default: float = 0.0) -> float:
    """``default`` when absent (None or ""), else a finite float; anything else (``"abc"``, ``NaN``,
    ``Infinity``, ``1e999``, a 400-digit number, a list ...) raises ValueError."""
    if x is None or x == "":
        return default
    if isinstance(x, bool) or not isinstance(x, (int, float, str)):
        raise ValueError(f"not a number: {type(x).__name__}")
    try:
        v = float(x)
    except OverflowError:
        raise ValueError("number out of range") from None
    if not math.isfinite(v):
        raise ValueError(f"not a finite number: {x!r:.40}")
    return v


def required(x: Any) -> float:
    """A number the answer must carry (see :func:`finite`)."""
    if x is None or x == "":
        raise ValueError("missing number")
    return finite(x)


def format_step(value: float, step: float | str, *, mode: str = "floor") -> str:
    """``value`` as an exact decimal string on the grid of ``step`` (no float artefacts).

    ``mode="floor"`` (quantities): the largest multiple not above the value, except that a value within
    1e-9 steps of a multiple (a float artefact such as 0.30000000000000004) snaps to it.
    ``mode="nearest"`` (prices): the nearest multiple.
    """
    d_step = Decimal(str(step))
    if d_step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    n = Decimal(repr(float(value))) / d_step
    nearest = n.to_integral_value()
    if mode == "nearest" or abs(n - nearest) <= Decimal("1e-9"):
        units = nearest
    else:
        units = n.to_integral_value(rounding=ROUND_FLOOR)
    q = (units * d_step).quantize(d_step) if d_step.as_tuple().exponent < 0 else units * d_step
    s = format(q, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s if s not in ("-0", "") else "0"
