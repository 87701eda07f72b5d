"""Timescale alignment, thesis and ranking of one asset from its per-timeframe Signals (pure).

Inputs are the :class:`~tracer.models.Signal` of each timeframe (``{"1h": sig, "4h": sig, ...}``,
shortest first) as :func:`tracer.signals.evaluate.evaluate` returns them. Rules:

* **composite** of a timeframe: ``0.6 * price + 0.4 * narrative`` (``Signal.inputs["composite"]``),
  its **direction** ``Signal.direction`` (sign of the composite when ``|composite| >=
  TB_MIN_DIRECTION_SCORE``, else 0).
* **alignment**: ``ups``/``downs`` = timeframes pointing up/down; ``sign`` = +1 when ups > downs,
  -1 when downs > ups, else 0; ``agree`` = max(ups, downs) / n; ``size_ratio`` = smallest |composite|
  / largest |composite| over the timeframes that agree with ``sign`` (1 = same size on every horizon);
  ``score = sign * agree * size_ratio`` in [-1, 1]. Label: ``aligned up/down`` (every timeframe the
  same non-zero direction), ``leaning up/down`` (a majority, none against), ``mixed`` (both
  directions present), ``flat`` (no direction anywhere).
* **bearish/bullish divergence** on a timeframe: relevant headlines exist and ``divergence =
  narrative - price`` is at or beyond the volume-adaptive trigger (``<= -trigger`` bearish: the news
  is much worse than the tape; ``>= +trigger`` bullish).
* **action**: ``Buy`` when more than half of the timeframes point up, none points down and no
  timeframe shows a bearish divergence; ``Sell`` symmetrically (no bullish divergence); else ``Watch``.
* **risk band** (volatility label of the shortest timeframe's regime, alignment, quality):
  ``High`` when volatility is high or extreme, or the alignment is mixed;
  ``Low`` when volatility is low or normal, every timeframe agrees, and the weakest quality >= 2;
  else ``Medium``.
* **readiness**: ``Now`` when the shortest timeframe's own decision (gates passed) is on the thesis
  side; ``Near`` when another timeframe's decision is, or the shortest timeframe points that way
  without passing its gates; ``Later`` otherwise (always for ``Watch``).
* **rank score**: ``|alignment score| * mean(quality)/10 * mean(conviction)/10``; theses sort
  Buy/Sell before Watch, then Now < Near < Later, then rank score (descending), then symbol.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

from tracer.models import Action, Signal

ACTIONS = ("Buy", "Sell", "Watch")
RISK_BANDS = ("Low", "Medium", "High")
READINESS = ("Now", "Near", "Later")


@dataclass(frozen=True, slots=True)
class Alignment:
    sign: int
    ups: int
    downs: int
    n: int
    agree: float
    size_ratio: float
    score: float
    label: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Thesis:
    action: str          # Buy | Sell | Watch
    risk_band: str       # Low | Medium | High
    readiness: str       # Now | Near | Later
    side: int            # +1 Buy, -1 Sell, 0 Watch
    lean: int            # the side a Watch plan is drawn for: alignment sign, +1 when flat
    rank_score: float
    why: str             # the rule that decided the action, in words

    def as_dict(self) -> dict:
        return {"action": self.action, "risk_band": self.risk_band, "readiness": self.readiness,
                "side": self.side, "lean": self.lean, "rank_score": self.rank_score, "why": self.why}


def composite(sig: Signal) -> float:
    c = sig.inputs.get("composite") if sig.inputs else None
    return float(c) if c is not None else 0.0


def divergence_side(sig: Signal) -> int:
    """-1 bearish divergence, +1 bullish divergence, 0 none (see the module docstring)."""
    if sig.headline_count <= 0:
        return 0
    if sig.divergence <= -sig.divergence_trigger:
        return -1
    if sig.divergence >= sig.divergence_trigger:
        return 1
    return 0


def alignment(signals: Mapping[str, Signal]) -> Alignment:
    sigs = list(signals.values())
    n = len(sigs)
    if n == 0:
        return Alignment(0, 0, 0, 0, 0.0, 0.0, 0.0, "flat")
    ups = sum(1 for s in sigs if s.direction > 0)
    downs = sum(1 for s in sigs if s.direction < 0)
    sign = 1 if ups > downs else -1 if downs > ups else 0
    agree = max(ups, downs) / n
    same = [abs(composite(s)) for s in sigs if s.direction == sign and sign != 0]
    size_ratio = (min(same) / max(same)) if same and max(same) > 0 else 0.0
    if ups == 0 and downs == 0:
        label = "flat"
    elif ups and downs:
        label = "mixed"
    elif max(ups, downs) == n:
        label = "aligned up" if sign > 0 else "aligned down"
    elif sign != 0:
        label = "leaning up" if sign > 0 else "leaning down"
    else:                                           # pragma: no cover - ups == downs == 0 handled above
        label = "flat"
    return Alignment(sign, ups, downs, n, round(agree, 6), round(size_ratio, 6),
                     round(sign * agree * size_ratio, 6), label)


def _shortest(signals: Mapping[str, Signal]) -> Signal:
    return next(iter(signals.values()))


def thesis(signals: Mapping[str, Signal]) -> Thesis:
    """The thesis of one asset from its per-timeframe signals (ordered shortest timeframe first)."""
    if not signals:
        return Thesis("Watch", "High", "Later", 0, 1, 0.0, "no timeframe could be evaluated")
    al = alignment(signals)
    sigs = list(signals.values())
    n = len(sigs)
    divs = {tf: divergence_side(s) for tf, s in signals.items()}
    side = 0
    if al.ups * 2 > n and al.downs == 0:
        bad = [tf for tf, d in divs.items() if d < 0]
        if bad:
            why = f"up on {al.ups}/{n} timeframes but bearish divergence on {', '.join(bad)}"
        else:
            side, why = 1, f"up on {al.ups}/{n} timeframes, none down, no bearish divergence"
    elif al.downs * 2 > n and al.ups == 0:
        bad = [tf for tf, d in divs.items() if d > 0]
        if bad:
            why = f"down on {al.downs}/{n} timeframes but bullish divergence on {', '.join(bad)}"
        else:
            side, why = -1, f"down on {al.downs}/{n} timeframes, none up, no bullish divergence"
    else:
        why = f"timeframes {al.label} (up {al.ups}, down {al.downs} of {n})"
    action = "Buy" if side > 0 else "Sell" if side < 0 else "Watch"

    short = _shortest(signals)
    vol = short.regime.volatility
    min_q = min(s.quality for s in sigs)
    if vol in ("high", "extreme") or al.label == "mixed":
        risk = "High"
    elif vol in ("low", "normal") and al.label.startswith("aligned") and min_q >= 2:
        risk = "Low"
    else:
        risk = "Medium"

    want = Action.BUY if side > 0 else Action.SELL
    if side == 0:
        ready = "Later"
    elif short.action == want:
        ready = "Now"
    elif any(s.action == want for s in sigs) or short.direction == side:
        ready = "Near"
    else:
        ready = "Later"

    mean_q = sum(s.quality for s in sigs) / n
    mean_c = sum(s.conviction for s in sigs) / n
    rank = round(abs(al.score) * mean_q / 10.0 * mean_c / 10.0, 6)
    return Thesis(action, risk, ready, side, al.sign if al.sign else 1, rank, why)


def rank_key(symbol: str, t: Thesis) -> tuple:
    """Sort key of a thesis (see the module docstring)."""
    return (t.action == "Watch", READINESS.index(t.readiness), -t.rank_score, symbol)
