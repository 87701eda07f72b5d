#!/usr/bin/env bash
# Health check of the trading system (cron every 15 minutes, or launchd StartInterval 900).
#
#   scripts/health_check.sh          one line per check, then a summary line
#   scripts/health_check.sh --json   one JSON document: {"status", "exit_code", "checks": [...]}
#   scripts/health_check.sh --no-alert   do not enqueue an alert
#
# Checks: agent processes, heartbeat freshness, DB PRAGMA quick_check, free disk, errors in recent cycles
# and logs, notification backlog, venue reachability (live only; offline: "skipped (offline replay)").
# Exit 0 ok, 1 warning (stale heartbeat, backlog, errors, low disk, agent never started),
# 2 critical (agent down without a clean stop, DB missing/corrupt, disk nearly full, invalid config).
# On warning or critical an alert goes to the notifications outbox (not repeated within
# TB_HEALTH_ALERT_REPEAT_MIN). The checks themselves: tracer/ops.py (`tracer health`).
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
  case "$arg" in
    --json|--no-alert) ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "health_check.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  echo "CRITICAL setup              $PY is missing (run ./start_trading_system.sh once)"
  exit 2
fi
rc=0
"$PY" -m tracer.cli health ${1+"$@"} || rc=$?
[ "$rc" -le 2 ] || rc=2      # anything unexpected (a crash of the checker) counts as critical
exit "$rc"
