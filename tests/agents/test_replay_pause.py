"""The replay's pause between cycles (TB_REPLAY_INTERVAL_S / --interval) writes heartbeats as a live feed's wait
does: a pause longer than the watchdog's heartbeat limit must not make a healthy waiting agent look hung."""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time

from envs import agent_env
from tracer.agents.hybrid import build
from tracer.config import load_settings
from tracer.store import parse_iso


def test_the_pause_between_replay_cycles_keeps_the_heartbeat_fresh(tmp_path):
    s = load_settings(agent_env(tmp_path, TB_SYMBOLS="BTC/USD,ETH/USD"), dotenv_path=None)
    done: dict[str, object] = {}

    def agent() -> None:        # built in its own thread: its SQLite connection belongs to that thread
        loop = build(s, logging.getLogger("replay-pause"))
        loop.wait_heartbeat_s = 0.3
        done.update(loop.run(cycles=2, interval_s=2.5))

    run = threading.Thread(target=agent)
    run.start()
    db: sqlite3.Connection | None = None
    seen: list[tuple[str, int, str]] = []
    try:
        deadline = time.monotonic() + 120
        while run.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
            if db is None:
                if not s.db_path.exists():
                    continue
                db = sqlite3.connect(s.db_path, timeout=30)
            try:
                row = db.execute("SELECT ts, cycle, status, detail_json FROM heartbeats "
                                 "WHERE agent='hybrid'").fetchone()
            except sqlite3.OperationalError:        # the schema not created yet
                continue
            if row is not None and (not seen or seen[-1][0] != row[0]):
                seen.append((row[0], row[1], json.loads(row[3] or "{}").get("waiting", "")))
    finally:
        run.join(180)
        if db is not None:
            db.close()
    waiting = [t for t, cycle, w in seen if cycle == 1 and w]
    assert len(waiting) >= 4, seen           # about every 0.3 s of the 2.5 s pause after cycle 1
    gaps = [(parse_iso(b) - parse_iso(a)).total_seconds() for a, b in zip(waiting, waiting[1:])]
    assert max(gaps) < 1.5, gaps
    assert done["cycles_this_run"] == 2


def test_the_waiting_heartbeat_comes_well_inside_the_watchdogs_limit(tmp_path):
    """Every minute by default (limit 10 min); a third of a limit under 3 minutes, so a short limit set for a quick
    check never takes a waiting agent for a hung one."""
    for limit_min, expect_s in (("10", 60.0), ("2", 40.0), ("0.25", 5.0)):
        s = load_settings(agent_env(tmp_path / limit_min, TB_WATCHDOG_MAX_HEARTBEAT_AGE_MIN=limit_min),
                          dotenv_path=None)
        loop = build(s, logging.getLogger("replay-pause"))
        try:
            assert loop.wait_heartbeat_s == expect_s
        finally:
            loop.store.close()
