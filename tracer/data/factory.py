"""Builds the market-data feed an agent reads from, from the settings (one place for every source)."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Sequence

from tracer.config import Settings
from tracer.data.feed import Feed

from tracer.config import BAR_SOURCES, NEWS_SOURCES, source_names as _names  # noqa: F401  (with the config)


def make_bar_source(name: str, s: Settings) -> Any:
    """One bar source by name (see ``BAR_SOURCES``), configured from the settings."""
    t = s.http_timeout_s
    if name == "alpaca":
        from tracer.data.sources.alpaca import AlpacaSource
        return AlpacaSource(s.alpaca_api_key, s.alpaca_secret_key, base_url=s.alpaca_data_url, timeout_s=t)
    if name in ("binance_spot", "binance_usdm"):
        from tracer.data.sources.binance import BinanceSource
        market = name.split("_", 1)[1]
        return BinanceSource(market, s.binance_spot_url if market == "spot" else s.binance_futures_data_url,
                             api_key=s.binance_api_key, api_secret=s.binance_api_secret, timeout_s=t)
    if name == "yahoo":
        from tracer.data.sources.yahoo import YahooSource
        return YahooSource(s.yahoo_url, timeout_s=t)
    if name == "coingecko":
        from tracer.data.sources.coingecko import CoinGeckoSource
        return CoinGeckoSource(s.coingecko_url, timeout_s=t)
    raise ValueError(f"no bar source {name!r}")


def make_news_sources(s: Settings, store=None, logger: logging.Logger | None = None) -> list[Any]:
    """The headline providers of ``TB_NEWS_SOURCES`` that have their keys (others are logged and left out)."""
    log = logger or logging.getLogger("tracer.news")
    out: list[Any] = []
    for name in _names(s.news_sources, NEWS_SOURCES, "TB_NEWS_SOURCES"):
        if name == "alpaca":
            if not (s.alpaca_api_key and s.alpaca_secret_key):
                log.warning("event=news_source_off source=alpaca reason=\"no TB_ALPACA_API_KEY/SECRET\"")
                continue
            from tracer.news.alpaca_news import AlpacaNews
            out.append(AlpacaNews(s.alpaca_api_key, s.alpaca_secret_key, base_url=s.alpaca_data_url,
                                  timeout_s=s.http_timeout_s, logger=log))
        elif name == "perplexity":
            if not s.pplx_keys:
                log.warning("event=news_source_off source=perplexity reason=\"no PPLX_API_KEY*\"")
                continue
            from tracer.news.keys import KeyRing
            from tracer.news.perplexity import PerplexityNews
            ring = KeyRing("perplexity", s.pplx_keys, store, auth_cooldown_s=s.pplx_auth_cooldown_s,
                           error_cooldown_s=s.pplx_error_cooldown_s)
            out.append(PerplexityNews(ring, base_url=s.pplx_url, model=s.pplx_model,
                                      timeout_s=max(s.http_timeout_s, 20.0), max_wait_s=s.pplx_max_wait_s,
                                      logger=log))
    return out


def make_feed(settings: Settings, symbols: Sequence[str], interval: timedelta = timedelta(hours=1),
              store=None, logger: logging.Logger | None = None) -> Feed:
    """The feed of ``TB_FEED``. For ``live``, ``store`` (a :class:`tracer.store.Store`; opened on
    ``TB_DB_PATH`` when None) keeps the API-key rotation state."""
    s = settings
    if s.feed == "replay":
        from pathlib import Path

        from tracer.data.replay import ReplayFeed
        if s.headlines_path and not Path(s.headlines_path).is_file():
            raise FileNotFoundError(f"TB_HEADLINES_PATH={s.headlines_path}: no such file "
                                    f"(leave it empty for the candle folder's headlines.csv, or price-only)")
        return ReplayFeed(symbols, data_dir=s.data_dir or None, headlines_path=s.headlines_path or None,
                          interval=interval, lookback=s.lookback_bars,
                          max_staleness=timedelta(minutes=s.max_staleness_min), min_bars=s.min_bars,
                          headline_lookback=timedelta(hours=s.headline_lookback_h), max_gap_bars=s.max_gap_bars,
                          logger=logger)
    if s.feed == "live":
        from tracer.data.live import LiveFeed
        from tracer.data.sources.chain import SourceChain
        from tracer.news.dedupe import HeadlineBook, parse_weights

        sources = [make_bar_source(n, s) for n in _names(s.bar_sources, BAR_SOURCES, "TB_BAR_SOURCES")]
        if not sources:
            raise ValueError("TB_BAR_SOURCES: at least one source is needed for TB_FEED=live")
        weights = parse_weights(s.news_source_weights)
        news: list[Any] = []
        if s.news_sources.strip():
            if store is None and "perplexity" in s.news_sources.lower() and s.pplx_keys:
                from tracer.store import Store
                store = Store(s.db_path)
            news = make_news_sources(s, store, logger)
        chain = SourceChain(sources, threshold=s.breaker_failures, cooldown_s=s.breaker_cooldown_s, logger=logger)
        lookback_h = timedelta(hours=s.headline_lookback_h)
        return LiveFeed(symbols, chain, news, interval=interval, lookback=s.lookback_bars, min_bars=s.min_bars,
                        max_staleness=timedelta(minutes=s.max_staleness_min), headline_lookback=lookback_h,
                        book=HeadlineBook(weights, retention=max(2 * lookback_h, timedelta(hours=1))),
                        logger=logger, max_gap_bars=s.max_gap_bars)
    raise ValueError(f"TB_FEED={s.feed!r}: no such feed")
