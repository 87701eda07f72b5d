#!/usr/bin/env bash
# Health check of the trading system (cron every 15 minutes, or launchd StartInterval 900).
#
#   scripts/health_check.sh          one line per check, then a summary line
#   scripts/health_check.sh --json   one JSON document: {"status", "exit_code", "checks": [...]}
#   scripts/health_check.sh --no-alert   do not enqueue an alert
#   scripts/health_check.sh --heal   also act: restart dead watchdog loops, the Telegram listener and agents
#                                    the watchdog gave up on (own cap TB_HEAL_MAX_PER_DAY); says what it did
#   scripts/health_check.sh --quiet  print nothing when all is ok (cron mails only trouble); same exit codes
#
# Checks: configuration, .env permissions, agent processes, heartbeat freshness, DB PRAGMA quick_check, free
# disk, errors in recent cycles and logs, notification backlog, live data sources, venues and their clocks,
# the watchdog loops and the listener, each agent's log freshness, memory and CPU, the sentiment scorer.
# Every result is recorded (monitor_events; scripts/monitoring_status.sh shows it).
# Exit 0 ok, 1 warning (stale heartbeat, backlog, errors, low disk, agent never started),
# 2 critical (agent down without a clean stop, DB missing/corrupt, disk nearly full, invalid config,
# the .venv unusable). Runs from cron's bare environment and any folder; with an invalid .env or no
# usable .venv it still prints its report (and its JSON) and exits 0/1/2.
# Alerts (tracer/ops/alerts.py): a failing check alerts at its level (warning/critical, routed by
# TB_ALERT_CHANNELS_<LEVEL>) when it starts failing, changes level, or its repeat window passed; a check that
# turns green again sends an info "recovered". The checks: tracer/ops/ and tracer/ops/checks.py.
# Each run also rotates the operations logs (health.log, watchdog.log, heal.log, alerts.log, start.log, *.err)
# at TB_LOG_MAX_MB into NAME.1 ... NAME.<TB_LOG_BACKUPS> (tracer/ops/logrotate.py).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
json=0
for arg in "$@"; do
  case "$arg" in
    --json) json=1 ;;
    --no-alert|--heal|--quiet) ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "health_check.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
PY=.venv/bin/python

# report_setup MESSAGE: the one critical finding when Python cannot run the checks at all
report_setup() {
  if [ "$json" = 1 ]; then
    # MESSAGE is one of the fixed texts below (no quote or backslash): safe to embed as is
    printf '{"status": "critical", "exit_code": 2, "time": "%s", "checks": [{"name": "setup", "level": 2, "message": "%s", "status": "critical"}]}\n' \
      "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1"
  else
    printf 'CRITICAL setup              %s\nhealth: critical (0 warning, 1 critical)\n' "$1"
  fi
  exit 2
}
fix="rebuild it: scripts/bootstrap.sh (or ./start_trading_system.sh, which runs it)"
if [ ! -e "$PY" ] && [ ! -L "$PY" ]; then
  report_setup "$PY is missing: $fix"
fi
if ! "$PY" -c 'import tracer.ops' >/dev/null 2>&1; then
  # a venv whose Python vanished (a Homebrew upgrade), or a broken install
  report_setup "$PY cannot run the checks (its Python is gone or the install is broken): $fix"
fi
rc=0
"$PY" -m tracer.cli health ${1+"$@"} || rc=$?
if [ "$rc" -gt 2 ]; then   # a crash of the checker counts as critical, and the JSON contract still holds
  [ "$json" = 0 ] || report_setup "the health checker crashed (exit $rc): see its error output"
  rc=2
fi
exit "$rc"
