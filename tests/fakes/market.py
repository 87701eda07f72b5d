"""Deterministic synthetic market shared by the fake venues: the same symbol and hour give the
same prices everywhere, so a test can compare what each source parsed with what was served."""
from __future__ import annotations

import math

HOUR = 3600


def price(symbol: str, t: float) -> float:
    """Smooth positive price path of ``symbol`` at epoch second ``t``."""
    base = 100.0 + 10.0 * (sum(map(ord, symbol)) % 7)
    x = t / HOUR
    return base * (1.0 + 0.05 * math.sin(x / 9.0) + 0.02 * math.cos(x / 2.3))


def bar(symbol: str, open_s: int, interval_s: int = HOUR) -> tuple[float, float, float, float, float]:
    """(open, high, low, close, volume) of the bar opening at ``open_s``."""
    o = price(symbol, open_s)
    c = price(symbol, open_s + interval_s)
    mid = price(symbol, open_s + interval_s / 2)
    h = max(o, c, mid) * 1.002
    lo = min(o, c, mid) * 0.998
    v = 1000.0 + (open_s // interval_s) % 97 * 10.0
    return round(o, 6), round(h, 6), round(lo, 6), round(c, 6), v


def open_times(start_s: int, end_s: int, now_s: int, interval_s: int = HOUR) -> list[int]:
    """Open times of the bars with ``start_s <= open <= end_s`` that have begun by ``now_s``
    (the last one may still be forming, as at a real venue)."""
    first = -(-start_s // interval_s) * interval_s
    last = min(end_s, now_s)
    return list(range(first, last + 1, interval_s)) if last >= first else []
