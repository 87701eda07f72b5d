"""The health checks behind ``scripts/health_check.sh`` (``tracer health``): configuration, ``.env``
permissions, agent processes and heartbeats, the DB, disk, recent errors, the notification backlog, storage
faults, venue events, and for a live configuration its data sources and venues. The monitoring layer's own
coverage (watchdog loops, listener, logs, resources, scorer, venue clocks) is in :mod:`tracer.ops.checks`.
Levels: 0 ok, 1 warning, 2 critical (see the README, "Operations")."""
from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

from tracer.models import AGENTS
from tracer.ops.common import LEVELS, _iso, _now, _parse_iso, human_age
from tracer.ops.heartbeat import agent_state, connect_existing
from tracer.ops.processes import agent_alive
from tracer.ops.suspend import SuspendClock, asleep_note, awake_age_at, record
from tracer.ops.watchdog import storage_fault_of


@dataclass
class Check:
    name: str
    level: int
    message: str

    @property
    def status(self) -> str:
        return LEVELS[self.level]


def _check_processes(settings: Any, now: datetime, clock: SuspendClock | None = None) -> list[Check]:
    out = []
    limit_s = settings.watchdog_max_heartbeat_age_min * 60
    gaps = record(settings.state_dir, "health", now, clock)     # awake time only: tracer/ops/suspend.py
    for a in AGENTS:
        st = agent_state(settings, a, now)
        if st.alive:
            up = human_age(now.timestamp() - st.started) if st.started else "?"
            out.append(Check(f"process[{a}]", 0, f"running (pid {st.pid}, up {up})"))
        elif st.stopped_by_signal:
            out.append(Check(f"process[{a}]", 1, f"stopped by a signal at cycle {st.hb_cycle} and not started "
                                                 f"again (a shutdown or logout?): ./start_trading_system.sh starts it"))
        elif st.stopped_cleanly:
            out.append(Check(f"process[{a}]", 0, f"stopped cleanly at cycle {st.hb_cycle} (not running)"))
        elif st.managed:
            out.append(Check(f"process[{a}]", 2, f"DOWN: pid {st.pid} is gone without a clean stop"))
        elif st.hb_status == "running" and agent_alive(st.hb_pid, a):
            out.append(Check(f"process[{a}]", 0, f"running (pid {st.hb_pid} from its heartbeat; no pid file)"))
        elif st.hb_status == "running":
            out.append(Check(f"process[{a}]", 2, f"DOWN: heartbeat says running but pid {st.hb_pid} is gone"))
        else:
            out.append(Check(f"process[{a}]", 1, "not started (no pid file, no heartbeat)"))
        # heartbeat freshness of a live agent
        if st.alive or (not st.managed and st.hb_status == "running" and agent_alive(st.hb_pid, a)):
            age = st.age_s if st.managed else st.hb_age_s
            awake = awake_age_at(age, now, gaps)
            asleep = asleep_note(age, awake)
            if awake is not None and awake > limit_s:
                what = "heartbeat" if (st.own_hb or not st.managed) else "no heartbeat since the start,"
                out.append(Check(f"heartbeat[{a}]", 1, f"STALE: {what} {human_age(age)} old{asleep} "
                                                       f"(limit {human_age(limit_s)}): hung?"))
            elif st.own_hb or not st.managed:
                out.append(Check(f"heartbeat[{a}]", 0, f"fresh ({human_age(age)} old{asleep}, cycle {st.hb_cycle}, "
                                                       f"clock {st.hb_clock})"))
            else:
                out.append(Check(f"heartbeat[{a}]", 0, f"starting (no heartbeat yet, up {human_age(age)}{asleep})"))
        else:
            out.append(Check(f"heartbeat[{a}]", 0, "n/a (not running)"))
    return out


def _check_db(settings: Any) -> tuple[Check, sqlite3.Connection | None]:
    p = Path(settings.db_path)
    if not p.is_file():
        return Check("database", 2, f"MISSING: {p} does not exist (run ./start_trading_system.sh or "
                                    f"tracer init-db)"), None
    try:
        conn = connect_existing(p)
        assert conn is not None
        rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if rows != ["ok"]:
            conn.close()
            return Check("database", 2, f"CORRUPT: quick_check says {'; '.join(map(str, rows[:3]))}"), None
        conn.execute("SELECT COUNT(*) FROM heartbeats").fetchone()
        # recent rows: the agents' cycles of the last hour (the heartbeat checks judge whether that is enough)
        n_runs, last_run = conn.execute("SELECT COUNT(*), MAX(started_at) FROM runs WHERE started_at >= ?",
                                        (_iso(_now() - timedelta(hours=1)),)).fetchone()
    except sqlite3.DatabaseError as e:
        return Check("database", 2, f"UNUSABLE: {p}: {e}"), None
    size = p.stat().st_size / 1e6
    return Check("database", 0, f"quick_check ok ({p}, {size:.1f} MB, schema v{version}; {n_runs} cycles in the "
                                f"last hour, last {last_run or '-'})"), conn


def _check_disk(settings: Any) -> Check:
    p = Path(settings.db_path).resolve().parent
    while not p.exists() and p != p.parent:
        p = p.parent
    u = shutil.disk_usage(p)
    pct = 100.0 * u.free / u.total if u.total else 0.0
    msg = f"{pct:.1f}% free ({u.free / 1e9:.1f} GB of {u.total / 1e9:.1f} GB) on the DB's volume"
    if pct < settings.health_disk_critical_pct:
        return Check("disk", 2, f"NEARLY FULL: {msg} (critical below {settings.health_disk_critical_pct:g}%)")
    if pct < settings.health_disk_warn_pct:
        return Check("disk", 1, f"LOW: {msg} (warning below {settings.health_disk_warn_pct:g}%)")
    return Check("disk", 0, msg)


def _error_lines(path: Path, since: datetime, max_bytes: int = 512_000) -> list[str]:
    """ERROR lines (and event=agent_error) of a log written after ``since`` (reads only the tail)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) < 3 or not (parts[1] in ("ERROR", "CRITICAL") or "event=agent_error" in line):
            continue
        ts = _parse_iso(parts[0])
        if ts is not None and ts >= since:
            out.append(line)
    return out


def _check_errors(settings: Any, conn: sqlite3.Connection | None, now: datetime) -> Check:
    win = settings.health_error_window_min
    since = now - timedelta(minutes=win)
    total = bad = 0
    if conn is not None:
        total, bad = conn.execute("SELECT COUNT(*), COALESCE(SUM(status != 'ok'), 0) FROM runs WHERE started_at >= ?",
                                  (_iso(since),)).fetchone()
    errs = []
    for a in AGENTS:
        errs += [(a, ln) for ln in _error_lines(Path(settings.log_dir) / f"{a}.log", since)]
    rate = bad / total if total else 0.0
    base = f"{bad}/{total} cycles not ok, {len(errs)} error log lines in the last {win:g} min"
    if errs or (total and rate > settings.health_error_rate_warn):
        last = errs[-1][1].split(" ", 3)[-1][:160] if errs else ""
        return Check("errors", 1, f"ERRORS: {base}" + (f"; last ({errs[-1][0]}): {last}" if errs else ""))
    return Check("errors", 0, base)


def _check_backlog(settings: Any, conn: sqlite3.Connection | None, now: datetime) -> Check:
    if conn is None:
        return Check("notifications", 2, "unknown (DB unusable)")
    cutoff = _iso(now - timedelta(minutes=settings.health_backlog_min))
    n, oldest = conn.execute("SELECT COUNT(*), MIN(created_at) FROM notifications WHERE status='pending' AND "
                             "created_at < ?", (cutoff,)).fetchone()
    failed = conn.execute("SELECT COUNT(*) FROM notifications WHERE status='failed' AND created_at >= ?",
                          (_iso(now - timedelta(minutes=settings.health_error_window_min)),)).fetchone()[0]
    pending = conn.execute("SELECT COUNT(*) FROM notifications WHERE status='pending'").fetchone()[0]
    if n or failed:
        bits = []
        if n:
            bits.append(f"{n} pending for more than {settings.health_backlog_min:g} min (oldest {oldest})")
        if failed:
            bits.append(f"{failed} failed in the last {settings.health_error_window_min:g} min")
        return Check("notifications", 1, "BACKLOG: " + "; ".join(bits))
    return Check("notifications", 0, f"no backlog ({pending} pending, none older than "
                                     f"{settings.health_backlog_min:g} min)")


# Public endpoints probed when a live venue is configured (no credentials needed for these).
VENUE_PROBES = {
    "binance": "https://api.binance.com/api/v3/ping",
    "binance_futures": "https://fapi.binance.com/fapi/v1/ping",
    "bybit": "https://api.bybit.com/v5/market/time",
    "alpaca": "https://api.alpaca.markets/v2/clock",
}


# Live bar sources (TB_BAR_SOURCES) and the path probed under each one's configured URL. TB_FEED itself
# ("live") names a mode, not a venue: its sources are what can be unreachable.
FEED_PROBES = {"alpaca": ("alpaca_data_url", "/"), "binance_spot": ("binance_spot_url", "/api/v3/ping"),
               "binance_usdm": ("binance_futures_data_url", "/fapi/v1/ping"), "yahoo": ("yahoo_url", "/"),
               "coingecko": ("coingecko_url", "/api/v3/ping")}


def live_feed_sources(settings: Any) -> list[tuple[str, str]]:
    """(source, probe URL) of each bar source TB_FEED=live reads ([] for the offline replay)."""
    if getattr(settings, "feed", "replay") != "live":
        return []
    names = dict.fromkeys(x.strip().lower() for x in str(settings.bar_sources).split(",") if x.strip())
    return [(n, getattr(settings, FEED_PROBES[n][0]).rstrip("/") + FEED_PROBES[n][1])
            for n in names if n in FEED_PROBES]


def live_venues(settings: Any) -> list[str]:
    """Trading venues the configuration sends orders to ([] for paper brokers)."""
    out = []
    for name in ("hybrid_venue", "futures_venue", "futures_backup"):
        v = getattr(settings, name, None)
        if v and v not in ("paper", "replay"):
            out.append(str(v))
    return list(dict.fromkeys(out))


def _probe_url(settings: Any, venue: str) -> str | None:
    """The trading venues are probed at their configured (paper/testnet/test) URL; data feeds at the public one."""
    configured = {"alpaca": ("alpaca_trading_url", "/v2/clock"), "binance": ("binance_futures_url", "/fapi/v1/ping"),
                  "bybit": ("bybit_url", "/v5/market/time")}
    if venue in configured and getattr(settings, configured[venue][0], None):
        return getattr(settings, configured[venue][0]).rstrip("/") + configured[venue][1]
    return next((u for k, u in VENUE_PROBES.items() if venue.lower().startswith(k)), None)


# venue events that need a person: a ban, refused keys, an unprotected or adopted position, a mismatch
VENUE_ALERT_KINDS = ("ip_banned", "auth_error", "position_unprotected", "position_adopted", "position_mismatch",
                     "order_missing", "exit_refused", "cancel_failed", "failover")


def _check_venue_events(settings: Any, conn: Any, now: datetime) -> Check:
    if conn is None:
        return Check("venue_events", 0, "skipped (no DB)")
    try:
        since = (now - timedelta(minutes=settings.health_error_window_min)).strftime("%Y-%m-%dT%H:%M:%S")
        q = ",".join("?" * len(VENUE_ALERT_KINDS))
        rows = conn.execute(f"SELECT kind, COUNT(*) FROM venue_events WHERE ts >= ? AND kind IN ({q}) "
                            f"GROUP BY kind ORDER BY kind", (since, *VENUE_ALERT_KINDS)).fetchall()
    except Exception as e:      # an old DB without the table: nothing to report
        return Check("venue_events", 0, f"skipped ({type(e).__name__})")
    if not rows:
        return Check("venue_events", 0, f"none needing attention in the last {settings.health_error_window_min:g} min")
    return Check("venue_events", 1, "ATTENTION: " + ", ".join(f"{k} x{n}" for k, n in rows))


def _probe(name: str, url: str) -> Check:
    """Reachability: any answer below 500 means the service is there (a 4xx on an unauthenticated probe too)."""
    import requests
    try:
        r = requests.get(url, timeout=5)
        return Check(name, 0 if r.status_code < 500 else 1, f"HTTP {r.status_code} from {url}")
    except requests.RequestException as e:
        return Check(name, 1, f"UNREACHABLE: {url}: {type(e).__name__}")


def _check_venues(settings: Any) -> list[Check]:
    venues = live_venues(settings)
    feeds = live_feed_sources(settings)
    if not venues and not feeds:
        return [Check("venue", 0, "skipped (offline replay)")]
    out = [_probe(f"feed[{n}]", url) for n, url in feeds]
    if not venues:
        out.append(Check("venue", 0, "skipped (paper brokers: no trading venue)"))
        return out
    for v in venues:
        url = _probe_url(settings, v)
        if url is None:
            out.append(Check(f"venue[{v}]", 1, "no reachability probe known for this venue"))
            continue
        out.append(_probe(f"venue[{v}]", url))
    return out


def _check_storage(settings: Any, conn: sqlite3.Connection | None, now: datetime) -> Check:
    """Storage faults of the agents (tracer/agents/loop.py): the DB could not take a cycle (locked, read-only,
    disk full). While one lasts the agent keeps ``TB_STATE_DIR/storage_fault_<agent>.json`` (the DB cannot
    say): critical. A fault cleared within ``TB_HEALTH_ERROR_WINDOW_MIN`` (its note on the recovering
    ``runs`` row): warning."""
    ongoing = []
    for a in AGENTS:
        f = storage_fault_of(settings, a)
        if f is None:
            continue          # none, or its process is gone: the next start retries the same way (and clears it)
        ongoing.append(f"{a} cannot write the DB since {f.get('since')} ({f.get('attempts')} attempts, clock "
                       f"{f.get('clock')}): {f.get('error')}")
    if ongoing:
        return Check("storage", 2, "STORAGE FAULT: " + "; ".join(ongoing))
    recovered = []
    if conn is not None:
        try:
            since = _iso(now - timedelta(minutes=settings.health_error_window_min))
            recovered = conn.execute("SELECT agent, note FROM runs WHERE started_at >= ? AND note LIKE "
                                     "'%storage_fault_recovered%' ORDER BY id", (since,)).fetchall()
        except sqlite3.DatabaseError:
            pass
    if recovered:
        return Check("storage", 1, f"RECOVERED: {len(recovered)} storage fault(s) cleared in the last "
                                   f"{settings.health_error_window_min:g} min; last ({recovered[-1][0]}): "
                                   f"{recovered[-1][1][:200]}")
    return Check("storage", 0, "no storage fault")


def health(settings: Any, now: datetime | None = None, clock: SuspendClock | None = None) -> list[Check]:
    now = now or _now()
    checks = _check_processes(settings, now, clock)
    db, conn = _check_db(settings)
    checks.append(db)
    try:
        checks.append(_check_disk(settings))
        checks.append(_check_storage(settings, conn, now))
        checks.append(_check_errors(settings, conn, now))
        checks.append(_check_backlog(settings, conn, now))
        checks.append(_check_venue_events(settings, conn, now))
    finally:
        if conn is not None:
            conn.close()
    checks += _check_venues(settings)
    return checks


def config_check(problems: Sequence[str]) -> Check:
    """An invalid configuration is critical: no agent starts or restarts on it."""
    if not problems:
        return Check("config", 0, "valid")
    return Check("config", 2, "INVALID (agents cannot start; see .venv/bin/tracer check-config): "
                              + "; ".join(problems))


def env_file_check(path: str | Path) -> Check:
    """``.env`` holds the API keys: readable by other accounts (a copied .env.example is 0644) is a warning."""
    p = Path(path)
    try:
        mode = p.stat().st_mode & 0o777
    except FileNotFoundError:
        return Check("env_file", 0, f"no {p} (settings from the environment only)")
    if mode & 0o077:
        return Check("env_file", 1, f"EXPOSED: {p} is mode {mode:04o}, readable by other users: chmod 600 {p}")
    return Check("env_file", 0, f"{p} is user-only ({mode:04o})")
