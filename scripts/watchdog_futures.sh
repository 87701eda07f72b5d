#!/usr/bin/env bash
# Watchdog of the futures agent: one pass (cron, launchd) or --loop (started by start_trading_system.sh).
# The logic is shared with the other agent's watchdog: see scripts/watchdog.sh.
set -euo pipefail
exec "$(dirname "$0")/watchdog.sh" futures ${1+"$@"}
