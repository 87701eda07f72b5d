"""Venue URL classes (local fakes, known testnets, anything else is live) and which settings hold each
venue's URL and keys."""
from __future__ import annotations

from urllib.parse import urlsplit

_VENUE_URL = {"alpaca": ("alpaca_trading_url", "TB_ALPACA_TRADING_URL"),
              "binance": ("binance_futures_url", "TB_BINANCE_FUTURES_URL"),
              "bybit": ("bybit_url", "TB_BYBIT_URL")}
_VENUE_KEYS = {"alpaca": ("alpaca_api_key", "TB_ALPACA_API_KEY"),
               "binance": ("binance_api_key", "TB_BINANCE_API_KEY"),
               "bybit": ("bybit_api_key", "TB_BYBIT_API_KEY")}


def is_local_url(url: str) -> bool:
    """127.0.0.1 / localhost URLs are the tests' fake venues: treated as test venues."""
    host = (urlsplit(url).hostname or "").lower()
    return host in ("127.0.0.1", "localhost", "::1")


# Known paper/testnet hosts; any other host is a live venue and needs TB_LIVE_TRADING=yes.
TEST_HOSTS = {
    "alpaca": ("paper-api.alpaca.markets",),
    "binance": ("testnet.binancefuture.com", "demo-fapi.binance.com"),
    "bybit": ("api-testnet.bybit.com", "api-demo.bybit.com"),
}


def is_test_url(venue: str, url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return is_local_url(url) or host in TEST_HOSTS.get(venue, ())
