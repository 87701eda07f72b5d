"""Which broker an agent gets: a paper broker (offline default) or a :class:`VenueBroker` over the
venue clients the configuration names (``TB_VENUE_HYBRID``, ``TB_VENUE_FUTURES``,
``TB_FUTURES_BACKUP_VENUE``). The live-trading guard is in :func:`tracer.config.venue_problems`:
settings that reach here have passed it."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Callable

from tracer.config import Settings
from tracer.store import Store
from tracer.execution.venue import VenueClient


def make_client(s: Settings, venue: str, log: logging.Logger | None = None) -> VenueClient:
    """The venue client of ``venue`` from the settings (keys from .env, base URL from config)."""
    kw = dict(timeout_s=s.venue_timeout_s)
    if venue == "alpaca":
        from tracer.execution.venues.alpaca import AlpacaSpotClient
        return AlpacaSpotClient(s.alpaca_api_key, s.alpaca_secret_key, s.alpaca_trading_url, **kw)
    if venue == "binance":
        from tracer.execution.venues.binance_futures import BinanceFuturesClient
        return BinanceFuturesClient(s.binance_api_key, s.binance_api_secret, s.binance_futures_url,
                                    recv_window_ms=s.venue_recv_window_ms, log=log, **kw)
    if venue == "bybit":
        from tracer.execution.venues.bybit import BybitFuturesClient
        return BybitFuturesClient(s.bybit_api_key, s.bybit_api_secret, s.bybit_url,
                                  recv_window_ms=s.venue_recv_window_ms, **kw)
    raise ValueError(f"unknown venue {venue!r}")


def venue_names(s: Settings, agent: str) -> list[str]:
    """The venues an agent trades on, main first; [] for the paper broker."""
    if agent == "hybrid":
        return [] if s.hybrid_venue == "paper" else [s.hybrid_venue]
    if s.futures_venue == "paper":
        return []
    return [s.futures_venue] + ([s.futures_backup] if s.futures_backup else [])


def make_venue_broker(s: Settings, agent: str, store: Store, log: logging.Logger, interval: timedelta,
                      alert: Callable[[str], None] | None = None):
    """A VenueBroker for ``agent``, or None when it trades on the paper broker."""
    from tracer.execution.venue_broker import VenueBroker
    names = venue_names(s, agent)
    if not names:
        return None
    clients = [make_client(s, v, log) for v in names]
    live = [c.name for c in clients if not c.is_test_venue]
    if live and s.live_trading != "yes":
        # venue_problems refuses such settings at load; this guards any other way settings may arrive
        raise ValueError(f"the {agent} agent would trade real money on {', '.join(live)} without "
                         f"TB_LIVE_TRADING=yes")
    log.info("venue_broker agent=%s venues=%s test_venues=%s", agent, ",".join(names),
             ",".join(str(c.is_test_venue).lower() for c in clients))
    return VenueBroker(agent, clients, store, log, futures=agent == "futures", max_retries=s.venue_max_retries,
                       backoff_s=s.venue_backoff_s, max_wait_s=s.venue_max_wait_s,
                       exit_max_wait_s=s.venue_exit_max_wait_s,
                       unconfirmed_grace=timedelta(seconds=s.venue_unconfirmed_grace_s),
                       vol_stop_mult=s.futures_vol_stop_mult if agent == "futures" else 0.0, interval=interval,
                       alert=alert)
