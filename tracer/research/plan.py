"""A per-timeframe trade plan from a Signal's price and ATR (pure).

For a side ``s`` (+1 long, -1 short; a Watch plan uses the thesis' lean and is marked conditional),
the last close ``P`` and that timeframe's ATR ``A``:

* entry zone: ``[P - entry_atr * A, P]`` for a long, ``[P, P + entry_atr * A]`` for a short;
* invalidation (stop): ``P - s * stop_atr * A``; the risk ``R = stop_atr * A``;
* targets: ``P + s * r * R`` for each ``r`` in ``targets_r`` (e.g. 1R and 2R);
* horizon: ``horizon_bars`` bars of the timeframe after the call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class PlanParams:
    entry_atr: float = 0.25
    stop_atr: float = 1.5
    targets_r: tuple[float, ...] = (1.0, 2.0)


@dataclass(frozen=True, slots=True)
class Plan:
    timeframe: str
    side: int
    conditional: bool
    price: float
    atr: float
    entry_low: float
    entry_high: float
    stop: float
    risk: float
    targets: tuple[float, ...]
    horizon_end: datetime
    horizon_bars: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {"timeframe": self.timeframe, "side": self.side, "conditional": self.conditional,
                "price": self.price, "atr": self.atr, "entry_zone": [self.entry_low, self.entry_high],
                "stop": self.stop, "risk": self.risk, "targets": list(self.targets),
                "horizon_bars": self.horizon_bars, "horizon_end": self.horizon_end}


def make_plan(timeframe: str, tf: timedelta, price: float, atr: float, side: int, conditional: bool,
              as_of: datetime, horizon_bars: int, p: PlanParams) -> Plan:
    if side not in (1, -1):
        raise ValueError(f"side must be +1 or -1, got {side}")
    if not (price > 0):
        raise ValueError(f"price must be positive, got {price}")
    a = float(atr) if atr == atr and atr > 0 else price * 0.01     # no ATR yet: 1% of price
    notes = () if (atr == atr and atr > 0) else ("ATR unavailable: 1% of price used",)
    risk = p.stop_atr * a
    zone = (price - p.entry_atr * a, price) if side > 0 else (price, price + p.entry_atr * a)
    return Plan(timeframe=timeframe, side=side, conditional=conditional, price=price, atr=a,
                entry_low=zone[0], entry_high=zone[1], stop=price - side * risk, risk=risk,
                targets=tuple(price + side * r * risk for r in p.targets_r),
                horizon_end=as_of + horizon_bars * tf, horizon_bars=horizon_bars, notes=notes)
