#!/usr/bin/env bash
# Terminal dashboard of both agents: up or down, uptime, last cycle, heartbeat age, open positions,
# today's P&L, trades today against the daily limit, equity, watchdog state and the last errors.
#
#   scripts/monitoring_status.sh              print it once, then the monitoring record
#   scripts/monitoring_status.sh --watch [N]  redraw every N seconds (default 5) until Ctrl-C
#   scripts/monitoring_status.sh --events [H] only the monitoring record: recent watchdog, heal and alert
#                                             events, and each health check's history over H hours (24)
#
# Rendered by `tracer dashboard` (tracer/ops/, tracer/ops/view.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "monitoring_status.sh: $PY is missing (run ./start_trading_system.sh once)" >&2; exit 2; }
case "${1:-}" in
  '') exec "$PY" -m tracer.cli dashboard ;;
  --events)
    hours="${2:-24}"
    case "$hours" in ''|*[!0-9.]*) echo "--events needs hours" >&2; exit 2 ;; esac
    exec "$PY" -m tracer.cli dashboard --events --hours "$hours" ;;
  --watch)
    every="${2:-5}"
    case "$every" in ''|*[!0-9.]*) echo "--watch needs seconds" >&2; exit 2 ;; esac
    while true; do
      clear 2>/dev/null || printf '\033[2J\033[H'
      "$PY" -m tracer.cli dashboard || true
      sleep "$every"
    done ;;
  -h|--help) sed -n '2,10p' "$0" ;;
  *) echo "monitoring_status.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
esac
