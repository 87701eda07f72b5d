"""One line of plain words per asset, generated from the scores that produced its thesis (pure).

Word scales (for a score ``x`` in [-1, 1]): ``|x| < 0.1`` flat/neutral, ``< 0.3`` slightly,
``< 0.6`` (no qualifier), else strongly; the sign picks up/down (price) or bullish/bearish
(headlines). Volume: ``|z| < 1`` normal, ``z >= 1`` heavy (``>= 2`` very heavy), ``z <= -1`` thin.
A divergence is only mentioned where the thesis rules see one (:func:`thesis.divergence_side`).
Every number shown is the score it describes, so the words can be checked against the numbers.
"""
from __future__ import annotations

from typing import Mapping

from tracer.models import Signal
from tracer.research.thesis import Alignment, Thesis, divergence_side


def strength(x: float) -> str:
    a = abs(x)
    if a < 0.1:
        return ""
    if a < 0.3:
        return "slightly "
    if a < 0.6:
        return ""
    return "strongly "


def price_words(x: float) -> str:
    if abs(x) < 0.1:
        return "flat"
    return f"{strength(x)}{'up' if x > 0 else 'down'}"


def news_words(x: float, count: int) -> str:
    if count <= 0:
        return "no relevant headlines"
    stories = f"{count} {'story' if count == 1 else 'stories'}"
    if abs(x) < 0.1:
        return f"headlines neutral ({x:+.2f} from {stories})"
    return f"headlines {strength(x)}{'bullish' if x > 0 else 'bearish'} ({x:+.2f} from {stories})"


def volume_words(z: float) -> str:
    if z >= 2:
        return f"volume very heavy (z {z:+.1f})"
    if z >= 1:
        return f"volume heavy (z {z:+.1f})"
    if z <= -1:
        return f"volume thin (z {z:+.1f})"
    return f"volume normal (z {z:+.1f})"


def evidence_line(symbol: str, signals: Mapping[str, Signal], al: Alignment, th: Thesis) -> str:
    """``BTC/USD: price up on 1h (+0.42), slightly up on 4h (+0.21), flat on 1d (+0.03); headlines
    slightly bullish (+0.18 from 5 stories); volume normal (z +0.4); regime bull, volatility high;
    timeframes leaning up → Buy (Medium risk, Near).``"""
    if not signals:
        return f"{symbol}: not enough data to evaluate → {th.action} ({th.risk_band} risk, {th.readiness})."
    parts = ["price " + ", ".join(f"{price_words(s.price_score)} on {tf} ({s.price_score:+.2f})"
                                  for tf, s in signals.items())]
    first = next(iter(signals.values()))
    parts.append(news_words(first.narrative, first.headline_count))
    for tf, s in signals.items():
        d = divergence_side(s)
        if d:
            what = "more bearish" if d < 0 else "more bullish"
            parts.append(f"news {what} than the tape on {tf} (divergence {s.divergence:+.2f})")
    parts.append(volume_words(first.volume_z))
    parts.append(f"regime {first.regime.label}, volatility {first.regime.volatility}")
    parts.append(f"timeframes {al.label}")
    return f"{symbol}: " + "; ".join(parts) + f" → {th.action} ({th.risk_band} risk, {th.readiness})."
