"""The terminal dashboard of both agents (``tracer dashboard``)."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tracer.models import AGENTS
from tracer.ops.common import _iso, _now, human_age
from tracer.ops.heartbeat import agent_state, connect_existing
from tracer.ops.processes import pid_alive, read_pid
from tracer.ops.watchdog import _wd_load, restarts_last_hour


# --- dashboard ----------------------------------------------------------------------------------------
def _last_errors(settings: Any, agent: str, n: int = 3) -> list[str]:
    from tracer.ops.health import _error_lines
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
