#!/usr/bin/env bash
# Weekly walk-forward optimisation (cron, or launchd com.tracerbullet.optimize): for each agent, propose a
# parameter set and alert with it through the notification outbox. Nothing is applied unless
# TB_AUTO_APPLY_ENABLED=1, and then only through the guard rails (TB_AUTO_APPLY_KILL=1 stops it).
#
#   scripts/weekly_optimize.sh                    both agents, settings from .env (TB_OPTIMIZE_*)
#   scripts/weekly_optimize.sh --agent hybrid     one agent
#   scripts/weekly_optimize.sh -- --trials 20 --jobs 2    anything after -- goes to `tracer optimize`
#
# Proposals: config/proposed_params.<agent>.json (next to TB_PROPOSED_PARAMS_PATH); reports: backtests/optimize/<agent>/ (report.json,
# optimize.png). Promote by hand with: tracer params promote --proposal config/proposed_params.<agent>.json
set -euo pipefail
cd "$(dirname "$0")/.."
agents="hybrid futures"
while [ $# -gt 0 ]; do
  case "$1" in
    --agent) agents="${2:?--agent needs hybrid or futures}"; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "weekly_optimize.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  echo "weekly_optimize.sh: $PY is missing (run ./start_trading_system.sh once)" >&2
  exit 2
fi
# proposals go next to TB_PROPOSED_PARAMS_PATH (default config/), one file per agent
pdir=$(dirname "$("$PY" -c 'from tracer.config import load_settings as l; print(l().proposed_params_path)')")
rc=0
for agent in $agents; do
  proposal="$pdir/proposed_params.$agent.json"
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) optimize $agent"
  if "$PY" -m tracer.cli optimize --agent "$agent" --proposal "$proposal" --alert --no-plot ${1+"$@"}; then
    # applies only with TB_AUTO_APPLY_ENABLED=1, no kill switch and every guard rail passed; else says why
    "$PY" -m tracer.cli params auto-apply --proposal "$proposal" || true
  else
    rc=1
    "$PY" -m tracer.cli alert optimize_failed "weekly optimisation of $agent failed (see the optimize log)" \
      --agent "$agent" || true
  fi
done
exit "$rc"
