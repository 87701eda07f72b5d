"""Symbols and their names across venues and news, in one place.

The canonical symbol is ``BASE/USD`` (e.g. ``BTC/USD``), Alpaca's notation. The
bundled replay data are Binance ``BASEUSDT`` pairs; USDT is treated as USD.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Asset:
    base: str                      # BTC
    name: str                      # bitcoin (CoinGecko id)
    aliases: tuple[str, ...]       # case-insensitive whole-word aliases used for news relevance
    upper_only: tuple[str, ...] = ()  # tickers that are ordinary words in lower case (SOL, ADA, LINK)
    exclude: tuple[str, ...] = ()  # phrases that look like an alias but mean something else


ASSETS: dict[str, Asset] = {
    "BTC": Asset("BTC", "bitcoin", ("bitcoin", "bitcoins", "btc"),
                 exclude=("bitcoin cash", "bitcoin sv", "bitcoin gold")),
    "ETH": Asset("ETH", "ethereum", ("ethereum", "ether", "eth"), exclude=("ethereum classic",)),
    "SOL": Asset("SOL", "solana", ("solana",), upper_only=("SOL",)),
    "XRP": Asset("XRP", "ripple", ("xrp", "ripple")),
    "DOGE": Asset("DOGE", "dogecoin", ("dogecoin", "doge")),
    "ADA": Asset("ADA", "cardano", ("cardano",), upper_only=("ADA",)),
    "BNB": Asset("BNB", "binancecoin", ("bnb", "binance coin")),
    "LINK": Asset("LINK", "chainlink", ("chainlink",), upper_only=("LINK",)),
    "AVAX": Asset("AVAX", "avalanche-2", ("avax",), upper_only=("Avalanche",)),
}


def base_of(symbol: str) -> str:
    """``BTC/USD``, ``BTCUSDT``, ``BTC-USD`` or ``BTC`` -> ``BTC``."""
    s = symbol.upper().strip()
    for sep in ("/", "-", "_"):
        if sep in s:
            return s.split(sep, 1)[0]
    for quote in ("USDT", "USDC", "BUSD", "USD"):
        if s.endswith(quote) and len(s) > len(quote):
            return s[: -len(quote)]
    return s


def canonical(symbol: str) -> str:
    """Any notation -> ``BASE/USD``."""
    return f"{base_of(symbol)}/USD"


def binance_symbol(symbol: str) -> str:
    """``BTC/USD`` -> ``BTCUSDT`` (Binance spot and USD-M perpetuals)."""
    return f"{base_of(symbol)}USDT"


def yahoo_symbol(symbol: str) -> str:
    return f"{base_of(symbol)}-USD"


def alpaca_news_symbol(symbol: str) -> str:
    """``BTC/USD`` -> ``BTCUSD`` (Alpaca news tags crypto without the slash)."""
    return f"{base_of(symbol)}USD"


def coingecko_id(symbol: str) -> str | None:
    """``BTC/USD`` -> ``bitcoin``; None for an asset not in :data:`ASSETS`."""
    asset = ASSETS.get(base_of(symbol))
    return asset.name if asset is not None else None


# Human names, for prompts and messages (the CoinGecko id is not always one: avalanche-2).
_DISPLAY: dict[str, str] = {
    "BTC": "Bitcoin", "ETH": "Ethereum", "SOL": "Solana", "XRP": "XRP", "DOGE": "Dogecoin",
    "ADA": "Cardano", "BNB": "BNB", "LINK": "Chainlink", "AVAX": "Avalanche",
}


def display_name(symbol: str) -> str:
    """``BTC/USD`` -> ``Bitcoin``; the base ticker for an unknown asset."""
    base = base_of(symbol)
    return _DISPLAY.get(base, base)


@lru_cache(maxsize=256)
def relevance_pattern(symbol: str) -> tuple[re.Pattern[str], re.Pattern[str] | None, re.Pattern[str] | None]:
    """Regexes (case-insensitive aliases, case-sensitive tickers, exclusions) for a symbol."""
    base = base_of(symbol)
    asset = ASSETS.get(base, Asset(base, base.lower(), (base.lower(),)))
    ci = re.compile(r"\b(" + "|".join(re.escape(a) for a in asset.aliases) + r")\b", re.IGNORECASE)
    cs = (re.compile(r"\b(" + "|".join(re.escape(a) for a in asset.upper_only) + r")\b")
          if asset.upper_only else None)
    ex = (re.compile(r"\b(" + "|".join(re.escape(a) for a in asset.exclude) + r")\b", re.IGNORECASE)
          if asset.exclude else None)
    return ci, cs, ex


def is_relevant(symbol: str, text: str) -> bool:
    """True when ``text`` names the asset as a whole word (alias or ticker), not an excluded look-alike."""
    ci, cs, ex = relevance_pattern(symbol)
    probe = ex.sub(" ", text) if ex is not None else text
    return bool(ci.search(probe) or (cs is not None and cs.search(probe)))
