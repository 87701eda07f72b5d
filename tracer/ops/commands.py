"""The operations subcommands of ``tracer`` (health, alert, heartbeat-age, dashboard, watchdog-check,
watchdog-restarted)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from typing import Any, Sequence

from rich.console import Console

from tracer.models import AGENTS
from tracer.ops.alerts import alert
from tracer.ops.common import LEVELS, _iso, _now
from tracer.ops.dashboard import dashboard
from tracer.ops.heartbeat import agent_state
from tracer.ops.watchdog import Verdict, watchdog_check, watchdog_restarted

# --- command line (wired into tracer.cli) ------------------------------------------------------------------
COMMANDS = ("health", "alert", "heartbeat-age", "dashboard", "watchdog-check", "watchdog-restarted")


def add_parsers(sub: Any) -> None:
    h = sub.add_parser("health", help="health checks: exit 0 ok, 1 warning, 2 critical (alerts on failure)")
    h.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    h.add_argument("--no-alert", action="store_true", help="do not enqueue an alert on warning/critical")
    h.add_argument("--heal", action="store_true",
                   help="restart dead watchdog loops, the listener and given-up agents (tracer/ops/heal.py)")
    h.add_argument("--quiet", action="store_true",
                   help="print nothing when all is ok (for cron: output only on trouble); exit codes unchanged")
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
        try:
            return _health(args, settings, problems)
        except Exception:        # a bug in a check: exit 3, which scripts/health_check.sh alerts as a crash
            import traceback
            traceback.print_exc()
            print("health: the checker crashed (exit 3)", file=sys.stderr)
            return 3
    return _dispatch_rest(args, settings, console, problems)


def _health(args: argparse.Namespace, settings: Any, problems: Sequence[str]) -> int:
    from tracer.ops.checks import coverage
    from tracer.ops.health import config_check, env_file_check, health
    checks = [config_check(problems), env_file_check(getattr(args, "env_file", ".env"))] + health(settings)
    checks += coverage(settings)
    from tracer.ops.logrotate import rotate_ops_logs
    rotate_ops_logs(settings)           # health.log, watchdog.log, *.err ...: capped at TB_LOG_MAX_MB
    from tracer.ops.records import Event, Source, record
    record(settings, [Event(Source.HEALTH, "check", c.name, c.level, c.message) for c in checks])
    if not args.no_alert:
        from tracer.ops.alerts import health_alerts
        health_alerts(settings, checks)
    worst = max(c.level for c in checks)
    healed = []
    if args.heal and not problems:          # never restart anything onto an invalid configuration
        from tracer.ops.heal import heal
        healed = heal(settings, checks)
    if args.quiet and worst == 0 and not healed:
        return worst
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


def _dispatch_rest(args: argparse.Namespace, settings: Any, console: Console, problems: Sequence[str]) -> int:
    if args.cmd == "alert":
        if args.repeat_key:
            from tracer.ops.alerts import alert_once
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
        from tracer.ops.view import show
        rc = 0 if args.events else dashboard(settings, console)
        show(settings, console, args.hours)
        return rc
    if args.cmd == "watchdog-check":
        if problems:
            # restarting on an invalid config would only fail (the agent refuses it): say so, and alert
            from tracer.ops.alerts import alert_once
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
