#!/usr/bin/env bash
# Terminal dashboard of both agents: up or down, uptime, last cycle, heartbeat age, open positions,
# today's P&L, trades today against the daily limit, equity, watchdog state and the last errors.
#
#   scripts/monitoring_status.sh              print it once, then the monitoring record
#   scripts/monitoring_status.sh --watch [N]  redraw every N seconds (default 5) until Ctrl-C
#   scripts/monitoring_status.sh --events [H] only the monitoring record: recent watchdog, heal and alert
#                                             events, and each health check's history over H hours (24)
#   --watch and --events combine (in either order): the monitoring record, redrawn.
#
# Rendered by `tracer dashboard` (tracer/ops/, tracer/ops/view.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

positive() {   # a number above 0 (0 would redraw in a busy loop)
  case "$1" in ''|.|*[!0-9.]*|*.*.*) return 1 ;; esac
  case "$1" in *[1-9]*) return 0 ;; *) return 1 ;; esac
}
is_number() { case "$1" in ''|*[!0-9.]*) return 1 ;; *) return 0 ;; esac; }

every=""
hours=""
while [ $# -gt 0 ]; do
  case "$1" in
    --watch)
      every=5
      # the value is optional: only a number that follows is taken as it
      if [ $# -gt 1 ] && is_number "$2"; then every=$2; shift; fi
      positive "$every" || { echo "--watch needs seconds above 0" >&2; exit 2; } ;;
    --events)
      hours=24
      if [ $# -gt 1 ] && is_number "$2"; then hours=$2; shift; fi
      positive "$hours" || { echo "--events needs hours above 0" >&2; exit 2; } ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "monitoring_status.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$PY" ] || { echo "monitoring_status.sh: $PY is missing (run ./start_trading_system.sh once)" >&2; exit 2; }
cmd=("$PY" -m tracer.cli dashboard)
if [ -n "$hours" ]; then cmd+=(--events --hours "$hours"); fi
if [ -z "$every" ]; then exec "${cmd[@]}"; fi
while true; do
  clear 2>/dev/null || printf '\033[2J\033[H'
  "${cmd[@]}" || true
  sleep "$every"
done
