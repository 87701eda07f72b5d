"""The live feed's source names and the news sources' weights (parsed here so the checks need nothing else)."""
from __future__ import annotations

from typing import Sequence

BAR_SOURCES = ("alpaca", "binance_spot", "binance_usdm", "yahoo", "coingecko")
NEWS_SOURCES = ("alpaca", "perplexity")


def source_names(spec: str, allowed: Sequence[str], var: str) -> list[str]:
    """``"binance_spot, yahoo"`` -> ``["binance_spot", "yahoo"]`` (unique, lower case); ValueError naming ``var``
    on an unknown name."""
    names = list(dict.fromkeys(x.strip().lower() for x in spec.split(",") if x.strip()))
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ValueError(f"{var}: unknown source(s) {', '.join(bad)}; allowed: {', '.join(allowed)}")
    return names


def parse_weights(spec: str) -> dict[str, float]:
    """``"alpaca=1, perplexity=0.7"`` -> ``{"alpaca": 1.0, "perplexity": 0.7}``; ValueError on a bad item."""
    out: dict[str, float] = {}
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        name, sep, val = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"source weight {item!r} is not name=number")
        try:
            w = float(val)
        except ValueError:
            raise ValueError(f"source weight {item!r} is not name=number") from None
        if not 0 <= w <= 10:
            raise ValueError(f"source weight {item!r} out of range [0, 10]")
        out[name.strip().lower()] = w
    return out
