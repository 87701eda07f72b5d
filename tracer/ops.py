"""Operations helpers behind the watchdog, health-check and dashboard scripts (the health checks themselves:
tracer/monitor/health.py and tracer/monitor/checks.py, still reachable as ``ops.health``, ``ops.Check``).

The shell scripts (``scripts/watchdog.sh``, ``scripts/health_check.sh``, ``scripts/monitoring_status.sh``)
only manage processes and locks; every decision that needs the DB, the clock or bookkeeping is here and
is reached through ``tracer`` subcommands (``watchdog-check``, ``watchdog-restarted``, ``health``,
``alert``, ``heartbeat-age``, ``dashboard``).

Files in ``TB_STATE_DIR``: ``<agent>.pid`` (written by whoever starts the agent), ``<agent>.args`` (the
agent's command-line options, one per line, so a restart uses the same command line),
``watchdog_<agent>.json`` (restart timestamps of the last hour and the "gave up" mark),
``health_alert_state.json`` (each failing check and when it was last alerted: tracer/monitor/alerts.py).
``TB_LOG_DIR/watchdog.log`` gets one line per watchdog action.

Definitions (documented in the README, tested in tests/test_watchdog.py and tests/test_health_check.py):

* An agent is *managed* when its pid file exists (started by the start script, the watchdog or launchd;
  ``--stop`` removes it). A watchdog never starts an agent without a pid file.
* A managed agent is *down* when its pid is gone, or *hung* when its heartbeat is older than
  ``TB_WATCHDOG_MAX_HEARTBEAT_AGE_MIN``. The heartbeat counts only when it was written by the pid in the
  pid file; before the new process wrote one, the age runs from the pid file's time (start-up grace).
* An agent whose own heartbeat says ``stopped`` ended cleanly (end of the replay data, ``--cycles``,
  SIGTERM): it is not restarted.
* Health levels: 0 ok, 1 warning (stale heartbeat, notification backlog, errors in recent cycles, low
  disk, agent never started), 2 critical (agent down: pid gone without a clean stop; DB missing, not a
  database or failing ``PRAGMA quick_check``; disk nearly full).
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

AGENTS = ("hybrid", "futures")
LEVELS = ("ok", "warning", "critical")
HOUR_S = 3600.0


# --- small utilities ---------------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return None


def human_age(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``3d04h``."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a live process (a zombie, exited but not reaped, is not alive)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.is_dir() and Path("/proc/self").exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, IndexError):
            return False
    try:   # macOS: no /proc
        out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
        return out.returncode == 0 and not out.stdout.strip().startswith("Z")
    except (OSError, subprocess.SubprocessError):
        return True


AGENT_SCRIPTS = {"hybrid": "hybrid_crypto_trader.py", "futures": "high_risk_futures_agent.py"}


def _cmdline(pid: int) -> str | None:
    """The command line of ``pid`` (None when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        pass
    try:
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def agent_alive(pid: int | None, agent: str) -> bool:
    """``pid`` is alive and runs ``agent`` (or the ``watchdog.sh --exec`` wrapper about to exec it): a pid
    recycled by an unrelated process after a reboot or a crash does not count, and is never signalled."""
    if not pid_alive(pid):
        return False
    cmd = _cmdline(pid)  # type: ignore[arg-type]
    return cmd is None or AGENT_SCRIPTS.get(agent, agent) in cmd or "watchdog" in cmd


def pid_file(settings: Any, agent: str) -> Path:
    return Path(settings.state_dir) / f"{agent}.pid"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def connect_existing(db_path: Path | str) -> sqlite3.Connection | None:
    """Open the DB without creating it (None when the file does not exist)."""
    p = Path(db_path)
    if not p.is_file():
        return None
    conn = sqlite3.connect(p.resolve().as_uri() + "?mode=rw", uri=True, timeout=10.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _heartbeat_row(db_path: Path | str, agent: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the agent's heartbeat row or None, the error when the DB could not be read)."""
    try:
        conn = connect_existing(db_path)
        if conn is None:
            return None, None
        try:
            row = conn.execute("SELECT * FROM heartbeats WHERE agent=?", (agent,)).fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        return None, f"{type(e).__name__}: {e}"
    return (dict(row) if row is not None else None), None


def log_line(settings: Any, name: str, agent: str | None, message: str) -> None:
    """Append ``<UTC time> <agent> <message>`` to ``TB_LOG_DIR/<name>.log``."""
    from tracer.logs import private_dir, private_open
    d = private_dir(Path(settings.log_dir))
    with private_open(d / f"{name}.log", "a") as fh:          # user-only, like every log and state file
        fh.write(f"{_iso(_now())} {agent or '-'} {message}\n")


def _deliver_now(settings: Any) -> None:
    """Send what is pending on Discord/Telegram now: the agents (whose worker threads normally deliver)
    may be the very thing that is down."""
    import logging
    from tracer.notify.outbox import remote_channels
    from tracer.notify.worker import flush
    if not remote_channels(settings):
        return
    log = logging.getLogger("alert")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
        log.propagate = False
    try:
        flush(settings, log, timeout_s=10.0)
    except Exception as e:  # noqa: BLE001 - delivery is retried by the workers later
        print(f"alert queued, immediate delivery failed ({type(e).__name__})", file=sys.stderr)


def alert(settings: Any, kind: str, message: str, agent: str | None = None, level: int = 1) -> list[int]:
    """Enqueue ``message`` on the channels of its level (``TB_ALERT_CHANNELS_<LEVEL>``; default warning).

    Never raises: when the DB cannot take it (missing, corrupt, locked), the alert goes to
    ``TB_LOG_DIR/alerts.log`` and to stderr instead, and ``[]`` is returned (tracer.monitor.alerts.send)."""
    from tracer.monitor.alerts import Level, send
    return send(settings, Level(level), kind, message, agent)


# --- heartbeat -----------------------------------------------------------------------------------
@dataclass
class AgentState:
    agent: str
    pid: int | None            # from the pid file
    managed: bool              # the pid file exists
    alive: bool
    started: float | None      # pid file time (epoch)
    hb_status: str | None      # status of the heartbeat row, whoever wrote it
    hb_cycle: int | None
    hb_clock: str | None
    hb_pid: int | None
    hb_age_s: float | None     # age of the heartbeat row
    own_hb: bool               # the heartbeat was written by the pid in the pid file
    age_s: float | None        # liveness age: own heartbeat, else time since the pid file was written
    hb_error: str | None = None  # the DB could not be read (locked, corrupt): the heartbeat is unknown

    @property
    def stopped_cleanly(self) -> bool:
        return self.hb_status == "stopped" and (self.own_hb or not self.managed)


def agent_state(settings: Any, agent: str, now: datetime | None = None) -> AgentState:
    now = now or _now()
    pf = pid_file(settings, agent)
    pid = read_pid(pf)
    started = _mtime(pf)
    hb, hb_error = _heartbeat_row(settings.db_path, agent)
    hb_ts = _parse_iso(hb["ts"]) if hb else None
    hb_age = (now - hb_ts).total_seconds() if hb_ts else None
    own = bool(hb and pid and hb["pid"] == pid)
    if own and hb_age is not None:
        age = hb_age
    elif started is not None:
        age = now.timestamp() - started
    else:
        age = hb_age
    return AgentState(agent=agent, pid=pid, managed=pf.exists(), alive=agent_alive(pid, agent), started=started,
                      hb_status=hb["status"] if hb else None, hb_cycle=hb["cycle"] if hb else None,
                      hb_clock=hb["clock"] if hb else None, hb_pid=hb["pid"] if hb else None,
                      hb_age_s=hb_age, own_hb=own, age_s=age, hb_error=hb_error)


# --- watchdog ----------------------------------------------------------------------------------------
@dataclass
class Verdict:
    action: str          # ok / absent / stopped / restart / capped
    pid: int | None      # the pid in the pid file
    reason: str
    alive: bool = False  # that pid is the live agent (a restart must stop it first)

    def line(self) -> str:
        """``<action> <pid|-> <alive|gone> <reason>`` (what scripts/watchdog.sh reads)."""
        return f"{self.action} {self.pid if self.pid else '-'} {'alive' if self.alive else 'gone'} {self.reason}"


def _wd_file(settings: Any, agent: str) -> Path:
    return Path(settings.state_dir) / f"watchdog_{agent}.json"


def _wd_load(settings: Any, agent: str) -> dict[str, Any]:
    try:
        d = json.loads(_wd_file(settings, agent).read_text())
        if isinstance(d, dict):
            return {"restarts": [float(x) for x in d.get("restarts", [])], "gave_up_at": d.get("gave_up_at")}
    except (FileNotFoundError, ValueError, TypeError):
        pass
    return {"restarts": [], "gave_up_at": None}


def _wd_save(settings: Any, agent: str, d: dict[str, Any]) -> None:
    p = _wd_file(settings, agent)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(f".tmp{os.getpid()}")
    from tracer.logs import private_write_text
    private_write_text(tmp, json.dumps(d))        # user-only state file
    os.replace(tmp, p)


def restarts_last_hour(settings: Any, agent: str, now: datetime | None = None) -> int:
    t = (now or _now()).timestamp()
    return sum(1 for x in _wd_load(settings, agent)["restarts"] if t - x < HOUR_S)


def watchdog_check(settings: Any, agent: str, now: datetime | None = None) -> Verdict:
    """What the watchdog must do with ``agent`` now (see the module docstring for the rules).

    When the restart cap is reached this records the "gave up" mark and enqueues the alert, once;
    it stays given up until the agent is started again by someone else (a newer pid file)."""
    now = now or _now()
    st = agent_state(settings, agent, now)
    limit_s = settings.watchdog_max_heartbeat_age_min * 60
    if not st.managed:
        return Verdict("absent", None, "no pid file: not started or stopped with --stop; nothing to do")
    if st.pid is None:
        down = "pid file unreadable"
    elif st.own_hb and st.hb_status == "stopped":
        if st.alive:
            return Verdict("ok", st.pid, "finishing (heartbeat says stopped)")
        return Verdict("stopped", st.pid, f"stopped cleanly at cycle {st.hb_cycle} (end of data, --cycles or "
                                          f"SIGTERM): not restarting")
    elif not st.alive:
        down = f"pid {st.pid} is gone" if not pid_alive(st.pid) else f"pid {st.pid} no longer runs the agent"
    elif st.hb_error is not None:     # never restart a live agent on a heartbeat we could not read
        return Verdict("ok", st.pid, f"running; heartbeat unreadable ({st.hb_error})")
    elif st.age_s is not None and st.age_s > limit_s:
        fault = storage_fault_of(settings, agent)
        last = _parse_iso(str(fault.get("last") or "")) if fault else None
        if fault and fault.get("pid") == st.pid and last is not None and (now - last).total_seconds() <= limit_s:
            # the DB cannot take its heartbeat: the agent is retrying (and managing exits), not hung;
            # a restart would only lose that (the health check reports the fault as critical)
            return Verdict("ok", st.pid, f"running; storage fault since {fault.get('since')} "
                                         f"({fault.get('attempts')} attempts): heartbeat cannot be written")
        what = "heartbeat" if st.own_hb else "no heartbeat since the start"
        down = f"hung: {what} {human_age(st.age_s)} ago (limit {human_age(limit_s)})"
    else:
        return Verdict("ok", st.pid, f"running, heartbeat {human_age(st.age_s)} old")

    book = _wd_load(settings, agent)
    t = now.timestamp()
    if book["gave_up_at"] is not None and st.started is not None and st.started > float(book["gave_up_at"]):
        book = {"restarts": [], "gave_up_at": None}          # started again by the operator: try again
        _wd_save(settings, agent, book)
    book["restarts"] = [x for x in book["restarts"] if t - x < HOUR_S]
    cap = settings.watchdog_max_restarts_per_hour
    if book["gave_up_at"] is not None:
        return Verdict("capped", st.pid, f"{down}; gave up after {cap} restarts within an hour: not restarting "
                                         f"(start it with ./start_trading_system.sh)")
    if len(book["restarts"]) >= cap:
        book["gave_up_at"] = t
        _wd_save(settings, agent, book)
        msg = (f"🛑 {agent} agent: watchdog gave up: {down}, and it was already restarted {len(book['restarts'])} "
               f"times in the last hour (cap TB_WATCHDOG_MAX_RESTARTS_PER_HOUR={cap}). Not restarting; "
               f"check {Path(settings.log_dir) / (agent + '.log')} and start it with ./start_trading_system.sh")
        log_line(settings, "watchdog", agent, f"gave_up reason=\"{down}\" restarts_last_hour={len(book['restarts'])}")
        alert(settings, "watchdog_gave_up", msg, agent, level=2)
        _record_watchdog(settings, agent, "gave_up", 2, msg)
        return Verdict("capped", st.pid, f"{down}; restart cap {cap}/h reached: alerted, not restarting")
    return Verdict("restart", st.pid, down, alive=st.alive)


def watchdog_restarted(settings: Any, agent: str, old_pid: int | None, new_pid: int | None, reason: str,
                       now: datetime | None = None) -> str:
    """Bookkeeping after a restart: timestamp, watchdog.log line and the 'agent restarted' alert."""
    now = now or _now()
    book = _wd_load(settings, agent)
    t = now.timestamp()
    book["restarts"] = [x for x in book["restarts"] if t - x < HOUR_S] + [t]
    _wd_save(settings, agent, book)
    n, cap = len(book["restarts"]), settings.watchdog_max_restarts_per_hour
    log_line(settings, "watchdog", agent, f"restarted old_pid={old_pid or '-'} new_pid={new_pid or '-'} "
                                          f"reason=\"{reason}\" restarts_last_hour={n}/{cap}")
    msg = (f"🔄 {agent} agent restarted by watchdog: {reason}; new pid {new_pid or '?'} "
           f"(restart {n}/{cap} this hour)")
    alert(settings, "watchdog_restart", msg, agent)
    _record_watchdog(settings, agent, "restart", 1, msg)
    return msg


def _record_watchdog(settings: Any, agent: str, kind: str, level: int, message: str) -> None:
    from tracer.monitor.records import Event, Source, record
    record(settings, [Event(Source.WATCHDOG, kind, agent, level, message)])


def storage_fault_of(settings: Any, agent: str) -> dict[str, Any] | None:
    """The storage fault ``agent``'s live process is in (``TB_STATE_DIR/storage_fault_<agent>.json``,
    rewritten on every attempt), or None."""
    p = Path(settings.state_dir) / f"storage_fault_{agent}.json"
    try:
        f = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(f, dict) or not agent_alive(f.get("pid"), agent):
        return None
    return f


# --- dashboard ----------------------------------------------------------------------------------------
def _last_errors(settings: Any, agent: str, n: int = 3) -> list[str]:
    from tracer.monitor.health import _error_lines
    lines = _error_lines(Path(settings.log_dir) / f"{agent}.log", datetime(1970, 1, 1, tzinfo=timezone.utc))
    return lines[-n:]


def dashboard_rows(settings: Any, now: datetime | None = None) -> list[dict[str, Any]]:
    """One dict per agent with everything the dashboard shows (also used by tests)."""
    now = now or _now()
    conn = None
    try:
        conn = connect_existing(settings.db_path)
    except sqlite3.DatabaseError:
        conn = None
    rows = []
    try:
        for a in AGENTS:
            st = agent_state(settings, a, now)
            state = ("up" if st.alive else "stopped" if st.stopped_cleanly
                     else "DOWN" if st.managed or st.hb_status == "running" else "not started")
            r: dict[str, Any] = {
                "agent": a, "state": state, "pid": st.pid if st.alive else None,
                "uptime_s": (now.timestamp() - st.started) if st.alive and st.started else None,
                "cycle": st.hb_cycle, "clock": st.hb_clock, "heartbeat_age_s": st.hb_age_s,
                "open_positions": [], "pnl_today": None, "equity": None, "trades_today": None,
                "trades_limit": getattr(settings, f"{a}_max_trades_per_day", None) or settings.max_trades_per_day,
                "restarts_last_hour": restarts_last_hour(settings, a, now),
                "watchdog": "loop" if pid_alive(read_pid(Path(settings.state_dir) / f"watchdog_{a}.pid")) else "-",
                "errors": _last_errors(settings, a),
            }
            if _wd_load(settings, a)["gave_up_at"] is not None:
                r["watchdog"] = "GAVE UP"
            if conn is not None:
                try:
                    r["open_positions"] = [f"{p['symbol']} {p['side']}" + (f" {p['leverage']:g}x" if p["leverage"] != 1
                                                                           else "")
                                           for p in conn.execute("SELECT symbol, side, leverage FROM positions WHERE "
                                                                 "agent=? AND status='open' ORDER BY id", (a,))]
                    acct = conn.execute("SELECT * FROM accounts WHERE agent=?", (a,)).fetchone()
                    run = conn.execute("SELECT * FROM runs WHERE agent=? ORDER BY clock DESC LIMIT 1", (a,)).fetchone()
                    if run is not None:
                        r["equity"] = run["equity"]
                        r["cycle"] = r["cycle"] if r["cycle"] is not None else run["cycle"]
                    if acct is not None and acct["day"]:
                        if run is not None and run["equity"] is not None and acct["day_start_equity"]:
                            r["pnl_today"] = run["equity"] - acct["day_start_equity"]
                        r["trades_today"] = conn.execute(
                            "SELECT COUNT(*) FROM orders WHERE agent=? AND purpose='entry' AND created_at>=? AND "
                            "state!='rejected'", (a, acct["day"] + "T00:00:00Z")).fetchone()[0]
                        r["day"] = acct["day"]
                except sqlite3.DatabaseError:
                    pass
            rows.append(r)
    finally:
        if conn is not None:
            conn.close()
    return rows


def dashboard(settings: Any, console: Console, now: datetime | None = None) -> int:
    now = now or _now()
    rows = dashboard_rows(settings, now)
    t = Table(title=f"Tracer Bullet agents — {_iso(now)}", title_justify="left")
    for col in ("agent", "state", "pid", "uptime", "last cycle", "heartbeat", "open positions",
                "P&L today", "trades today", "equity", "watchdog", "last error"):
        t.add_column(col, overflow="fold")
    style = {"up": "green", "stopped": "yellow", "DOWN": "bold red", "not started": "dim"}
    for r in rows:
        cyc = "-" if r["cycle"] is None else f"{r['cycle']} @ {r['clock'] or '?'}"
        pos = f"{len(r['open_positions'])}" + (f": {', '.join(r['open_positions'])}" if r["open_positions"] else "")
        pnl = "-" if r["pnl_today"] is None else f"{r['pnl_today']:+.2f}"
        if r["pnl_today"] is not None:
            pnl = f"[{'green' if r['pnl_today'] >= 0 else 'red'}]{pnl}[/]"
        trades = "-" if r["trades_today"] is None else f"{r['trades_today']}/{r['trades_limit']}"
        wd = r["watchdog"] + (f", {r['restarts_last_hour']} restarts/h" if r["restarts_last_hour"] else "")
        err = r["errors"][-1].split(" ", 3)[-1][:80] if r["errors"] else "-"
        t.add_row(r["agent"], f"[{style.get(r['state'], '')}]{r['state']}[/]", str(r["pid"] or "-"),
                  human_age(r["uptime_s"]), cyc, human_age(r["heartbeat_age_s"]), pos, pnl, trades,
                  "-" if r["equity"] is None else f"{r['equity']:.2f}", wd, err)
    console.print(t)
    errs = [(r["agent"], e) for r in rows for e in r["errors"]]
    if errs:
        console.print("[bold]Last errors[/]")
        for a, e in errs:
            console.print(f"  {a}: {e}", markup=False, highlight=False)
    return 0


# --- command line (wired into tracer.cli) ------------------------------------------------------------------
COMMANDS = ("health", "alert", "heartbeat-age", "dashboard", "watchdog-check", "watchdog-restarted")


def add_parsers(sub: Any) -> None:
    h = sub.add_parser("health", help="health checks: exit 0 ok, 1 warning, 2 critical (alerts on failure)")
    h.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    h.add_argument("--no-alert", action="store_true", help="do not enqueue an alert on warning/critical")
    h.add_argument("--heal", action="store_true",
                   help="restart dead watchdog loops, the listener and given-up agents (tracer/monitor/heal.py)")
    a = sub.add_parser("alert", help="enqueue an alert for every enabled notification channel")
    a.add_argument("kind")
    a.add_argument("message")
    a.add_argument("--agent", default=None)
    a.add_argument("--repeat-key", default=None,
                   help="send only if no alert with this key went out within TB_HEALTH_ALERT_REPEAT_MIN")
    b = sub.add_parser("heartbeat-age", help="print: <age seconds> <status> <cycle> <pid> ('-' when unknown)")
    b.add_argument("agent", choices=AGENTS)
    d = sub.add_parser("dashboard", help="both agents at a glance, then the monitoring record (rich tables)")
    d.add_argument("--events", action="store_true", help="only the monitoring record: recent events, check history")
    d.add_argument("--hours", type=float, default=24.0, help="hours of check history (default 24)")
    w = sub.add_parser("watchdog-check", help="(for scripts/watchdog.sh) print: <action> <pid> <reason>")
    w.add_argument("agent", choices=AGENTS)
    r = sub.add_parser("watchdog-restarted", help="(for scripts/watchdog.sh) record a restart, log and alert")
    r.add_argument("agent", choices=AGENTS)
    r.add_argument("--old-pid", type=int, default=None)
    r.add_argument("--new-pid", type=int, default=None)
    r.add_argument("--reason", default="down")


def dispatch(args: argparse.Namespace, settings: Any, console: Console, problems: Sequence[str] = ()) -> int:
    if args.cmd == "health":
        from tracer.monitor.checks import coverage
        from tracer.monitor.health import config_check, env_file_check, health
        checks = [config_check(problems), env_file_check(getattr(args, "env_file", ".env"))] + health(settings)
        checks += coverage(settings)
        from tracer.monitor.records import Event, Source, record
        record(settings, [Event(Source.HEALTH, "check", c.name, c.level, c.message) for c in checks])
        if not args.no_alert:
            from tracer.monitor.alerts import health_alerts
            health_alerts(settings, checks)
        worst = max(c.level for c in checks)
        healed = []
        if args.heal and not problems:          # never restart anything onto an invalid configuration
            from tracer.monitor.heal import heal
            healed = heal(settings, checks)
        try:
            if args.json:
                print(json.dumps({"status": LEVELS[worst], "exit_code": worst, "time": _iso(_now()),
                                  "checks": [dict(asdict(c), status=c.status) for c in checks],
                                  "heal": [asdict(h) for h in healed]}, indent=2))
            else:
                for c in checks:
                    print(f"{c.status.upper():<9}{c.name:<20}{c.message}")
                for h in healed:
                    print(h.line())
                n1 = sum(c.level == 1 for c in checks)
                n2 = sum(c.level == 2 for c in checks)
                print(f"health: {LEVELS[worst]} ({n1} warning, {n2} critical)")
            sys.stdout.flush()
        except BrokenPipeError:
            # `health_check.sh | head`: the reader left; the exit code still carries the result
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return worst
    if args.cmd == "alert":
        if args.repeat_key:
            from tracer.monitor.alerts import alert_once
            sent = alert_once(settings, args.repeat_key, args.kind, args.message, args.agent)
            print("alert enqueued" if sent else f"alert not repeated (key {args.repeat_key} sent recently)")
            return 0
        ids = alert(settings, args.kind, args.message, args.agent)
        print(f"alert enqueued: {len(ids)} channel(s)")
        return 0
    if args.cmd == "heartbeat-age":
        st = agent_state(settings, args.agent)
        f = (lambda v: "-" if v is None else str(v))
        print(" ".join([f(None if st.hb_age_s is None else round(st.hb_age_s, 1)), f(st.hb_status), f(st.hb_cycle),
                        f(st.hb_pid)]))
        return 0
    if args.cmd == "dashboard":
        from tracer.monitor.view import show
        rc = 0 if args.events else dashboard(settings, console)
        show(settings, console, args.hours)
        return rc
    if args.cmd == "watchdog-check":
        if problems:
            # restarting on an invalid config would only fail (the agent refuses it): say so, and alert
            from tracer.monitor.alerts import alert_once
            alert_once(settings, "config_invalid", "config_invalid",
                       f"🚨 configuration invalid: the watchdog cannot restart the {args.agent} agent until "
                       f".env is fixed (.venv/bin/tracer check-config): " + "; ".join(problems), args.agent)
            print(Verdict("error", None, "configuration invalid: " + "; ".join(problems)).line())
            return 0
        print(watchdog_check(settings, args.agent).line())
        return 0
    if args.cmd == "watchdog-restarted":
        print(watchdog_restarted(settings, args.agent, args.old_pid, args.new_pid, args.reason))
        return 0
    raise AssertionError(args.cmd)


__all__ = ["AGENTS", "AgentState", "agent_alive", "Verdict", "agent_state", "alert", "dashboard", "dashboard_rows",
           "human_age", "pid_alive", "watchdog_check", "watchdog_restarted", "add_parsers", "dispatch", "COMMANDS"]


_HEALTH_NAMES = ("Check", "health", "live_venues", "live_feed_sources", "config_check", "env_file_check")


def __getattr__(name: str) -> Any:
    """``ops.health``, ``ops.Check``...: the health checks live in tracer/monitor/health.py (which builds on the
    helpers here, hence resolved on first use rather than imported at the top)."""
    if name in _HEALTH_NAMES:
        from tracer.monitor import health as _health
        return getattr(_health, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
