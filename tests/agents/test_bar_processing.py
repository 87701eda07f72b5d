"""Which bars the broker sees in a cycle (tracer.agents.bar_processing): a bar one symbol's sources had only after
its close is not lost for being older than the clock processed before it arrived."""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from envs import agent_env
from tracer.agents.hybrid import build
from tracer.config import load_settings

H = timedelta(hours=1)


def _log(name: str) -> logging.Logger:
    log = logging.getLogger(name)
    log.handlers.clear()
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def test_a_bar_that_one_symbol_gets_late_reaches_the_broker_at_the_next_cycle(tmp_path):
    s = load_settings(environ=agent_env(tmp_path, TB_REPLAY_START="2022-06-12T20:00:00Z",
                                        TB_SYMBOLS="BTC/USD,ETH/USD"), dotenv_path=None)
    loop = build(s, _log("late-bar"))
    seen: list[tuple[str, str]] = []
    on_bar = loop.broker.on_bar

    def record(bar):
        seen.append((bar.symbol, bar.ts.isoformat()))
        return on_bar(bar)
    loop.broker.on_bar = record
    snapshot = loop.feed.snapshot

    def eth_late(now):
        """At the second clock no source has ETH's newest bar yet (live: every source errs or lags)."""
        snap = snapshot(now)
        if now != t1:
            return snap
        return replace(snap, bars={k: v for k, v in snap.bars.items() if k != "ETH/USD"},
                       rejected={**snap.rejected, "ETH/USD": "no_source: binance_spot: error: ReadTimeout"})
    loop.feed.snapshot = eth_late
    try:
        t0 = loop.start()
        t1 = t0 + H
        for t in (t0, t1, t1 + H):
            loop.run_cycle(t)
    finally:
        loop.store.close()
    late = (t1 - H).isoformat()                   # ETH's bar closing at t1, which came only at t1 + 1h
    assert ("BTC/USD", late) in seen
    assert ("ETH/USD", late) in seen, f"ETH's bar opening {late} never reached the broker: {seen}"
    assert len(seen) == len(set(seen)) == 6       # every bar once: three clocks, two symbols
