"""Live bar sources (Alpaca, Binance spot and USD-M, Yahoo Finance, CoinGecko) and the failover chain."""
from tracer.data.sources.base import BarSet, BarSource, CircuitBreaker, SourceError, UnsupportedSymbol

__all__ = ["BarSet", "BarSource", "CircuitBreaker", "SourceError", "UnsupportedSymbol"]
