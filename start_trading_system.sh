#!/usr/bin/env bash
# Tracer Bullet: set up (.venv) and start the trading agents in the background.
#
#   ./start_trading_system.sh              set up, validate config, init the DB, start the agents
#   ./start_trading_system.sh --cycles N   bounded run: each agent stops after N cycles (the watchdog loops
#                                          stay, leaving a cleanly stopped agent alone, until --stop)
#   ./start_trading_system.sh --interval S seconds between cycles (default TB_REPLAY_INTERVAL_S offline)
#   ./start_trading_system.sh --foreground run the agents in this terminal (Ctrl-C stops them)
#   ./start_trading_system.sh --status     pids, heartbeats, cash, equity, trades
#   ./start_trading_system.sh --stop       graceful stop (SIGTERM, wait, then SIGKILL)
#   ./start_trading_system.sh --restart    stop, then start (the web cockpit too, when it was running)
#   ./start_trading_system.sh --web        also serve the web cockpit on 127.0.0.1 (TB_WEB_PORT, token TB_WEB_TOKEN)
#
# Safe to run twice: a running agent (live pid in $TB_STATE_DIR/<agent>.pid) is not started again.
set -euo pipefail
umask 077   # state, logs, pid and lock files: user-only (they can hold tracebacks and account data)
cd "$(dirname "$0")"

mode=start
cycles=""
web=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stop) mode=stop ;;
    --status) mode=status ;;
    --restart) mode=restart ;;
    --foreground) mode=foreground ;;
    --web) web=1 ;;
    --cycles) cycles="${2:?--cycles needs a number}"; shift ;;
    --interval) extra+=(--interval "${2:?--interval needs seconds}"); shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "start_trading_system.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$cycles" ]; then
  case "$cycles" in ''|*[!0-9]*) echo "--cycles needs a positive integer" >&2; exit 2 ;; esac
  extra+=(--cycles "$cycles")
fi

scripts/bootstrap.sh
PY=.venv/bin/python

# .env holds API keys: user-only. A copy of .env.example is 0644 (readable by every account on the Mac).
if [ -f .env ] && [ -n "$(find .env -perm -004 -o -perm -040 2>/dev/null)" ]; then
  chmod 600 .env
  echo "start_trading_system.sh: .env was readable by other users; made it user-only (chmod 600)" >&2
fi

# Paths from the one typed config (env and .env), so the script and the agents agree.
# One path per line, never split on spaces ("Application Support", "My Drive"): a folder name with a space
# must not scatter pid files into a stray tree. A broken config falls back to the defaults here; check-config
# below refuses to start anything.
paths=$($PY -c 'from tracer.config import load_settings as l; s=l(); print(s.state_dir); print(s.log_dir)' 2>/dev/null \
  || printf 'state\nlogs\n')
STATE_DIR=$(printf '%s\n' "$paths" | sed -n 1p)
LOG_DIR=$(printf '%s\n' "$paths" | sed -n 2p)
mkdir -p "$STATE_DIR" "$LOG_DIR"
chmod 700 "$STATE_DIR" 2>/dev/null || true

AGENTS=(hybrid)
script_of() {
  case "$1" in
    hybrid) echo scripts/hybrid_crypto_trader.py ;;
    futures) echo scripts/high_risk_futures_agent.py ;;
  esac
}
[ -f scripts/high_risk_futures_agent.py ] && AGENTS+=(futures)

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- launchd (macOS, scripts/install_launchd.sh): when the jobs are installed, launchd keeps each agent's
# watchdog loop alive (and the loop the agent), so a start loads them instead of starting loops here, and a
# stop boots them out AND disables them: a job left loaded (or only unloaded) comes back at the next login.
LAUNCH_DIR="$HOME/Library/LaunchAgents"
LAUNCHD_JOBS="com.tracerbullet.hybrid com.tracerbullet.futures com.tracerbullet.health"
launchd_installed() {   # the installed jobs this script manages, one per line (none without launchctl)
  local l
  command -v launchctl >/dev/null 2>&1 || return 0
  for l in $LAUNCHD_JOBS; do [ -f "$LAUNCH_DIR/$l.plist" ] && echo "$l"; done
  return 0
}
launchd_domain="gui/$(id -u)"
launchd_loaded() { launchctl print "$launchd_domain/$1" >/dev/null 2>&1; }
launchd_start() {
  local l
  for l in $(launchd_installed); do
    launchctl enable "$launchd_domain/$l" 2>/dev/null || true
    if launchd_loaded "$l"; then echo "launchd: $l already loaded"; continue; fi
    if launchctl bootstrap "$launchd_domain" "$LAUNCH_DIR/$l.plist" 2>/dev/null; then echo "launchd: $l loaded"
    else echo "launchd: $l could not be loaded (see: launchctl print $launchd_domain/$l)" >&2; fi
  done
}
launchd_stop() {
  local l
  for l in $(launchd_installed); do
    launchctl bootout "$launchd_domain/$l" 2>/dev/null || true
    launchctl disable "$launchd_domain/$l" 2>/dev/null || true
    echo "launchd: $l unloaded and disabled (not started at login until ./start_trading_system.sh)"
  done
}
launchd_status() {
  local l
  for l in $(launchd_installed); do
    if launchd_loaded "$l"; then echo "launchd: $l loaded"; else echo "launchd: $l installed, not loaded"; fi
  done
}

# Watchdogs: one scripts/watchdog_<agent>.sh --loop per agent (pid file watchdog_<agent>.pid), restarting a
# dead or hung agent (README "Operations"); off with TB_WATCHDOG_ENABLED=false.
start_watchdogs() {
  if [ "$($PY -c 'from tracer.config import load_settings as l; print(l().watchdog_enabled)' 2>/dev/null)" != True ]; then
    echo "watchdogs: disabled (TB_WATCHDOG_ENABLED=false)"; return 0
  fi
  if [ -n "$(launchd_installed)" ]; then
    launchd_start           # launchd runs the watchdog loops (one supervisor per agent)
    return 0
  fi
  for a in "${AGENTS[@]}"; do
    pidf="$STATE_DIR/watchdog_$a.pid"
    if pid_alive "$pidf"; then echo "watchdog_$a: already running (pid $(cat "$pidf"))"; continue; fi
    nohup "scripts/watchdog_$a.sh" --loop >/dev/null 2>>"$LOG_DIR/watchdog.err" </dev/null &
    echo $! > "$pidf"
    echo "watchdog_$a: started (pid $!), log $LOG_DIR/watchdog.log"
  done
}
# stop_pidfile NAME PIDFILE SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL; remove the pid file.
# Prints "NAME: stopped" (or "NAME: not running").
stop_pidfile() {
  local name="$1" pidf="$2" secs="$3" pid
  if ! pid_alive "$pidf"; then
    echo "$name: not running"; rm -f "$pidf"; return 0
  fi
  pid=$(cat "$pidf")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((secs * 5))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name: did not stop within $secs s, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidf"
  echo "$name: stopped"
}
stop_watchdogs() {   # before the agents, so that no watchdog restarts an agent being stopped
  for a in "${AGENTS[@]}"; do
    if pid_alive "$STATE_DIR/watchdog_$a.pid"; then stop_pidfile "watchdog_$a" "$STATE_DIR/watchdog_$a.pid" 10
    else rm -f "$STATE_DIR/watchdog_$a.pid"; fi
  done
}

# Telegram listener: the one process that polls the bot (commands /status /pause ...), acting on the agents
# through the DB, and delivering the outbox while the agents are down; only when Telegram is configured.
start_listener() {
  if [ "$($PY -c 'from tracer.config import load_settings as l; s=l(); print(bool(s.telegram_bot_token and s.telegram_chat_id))' 2>/dev/null)" != True ]; then
    return 0
  fi
  pidf="$STATE_DIR/telegram.pid"
  if pid_alive "$pidf"; then echo "telegram listener: already running (pid $(cat "$pidf"))"; return 0; fi
  nohup $PY scripts/telegram_listener.py >/dev/null 2>>"$LOG_DIR/telegram.err" </dev/null &
  echo $! > "$pidf"
  echo "telegram listener: started (pid $!), log $LOG_DIR/telegram.log"
}
stop_listener() {
  if pid_alive "$STATE_DIR/telegram.pid"; then stop_pidfile "telegram listener" "$STATE_DIR/telegram.pid" 30
  else rm -f "$STATE_DIR/telegram.pid"; fi
}

# The web cockpit (tracer web, --web only): 127.0.0.1:TB_WEB_PORT. A missing token is generated into .env and
# printed here, once, before the server goes to the background (its output is not kept: the token is never logged).
start_web() {
  [ "$web" = 1 ] || return 0
  pidf="$STATE_DIR/web.pid"
  if pid_alive "$pidf"; then echo "web cockpit: already running (pid $(cat "$pidf"))"; return 0; fi
  $PY -m tracer.cli web --init-token
  nohup $PY -m tracer.cli web >/dev/null 2>>"$LOG_DIR/web.err" </dev/null &
  echo $! > "$pidf"
  echo "web cockpit: started (pid $!), http://127.0.0.1:$($PY -c 'from tracer.config import load_settings as l; print(l().web_port)' 2>/dev/null || echo 8787)/ (token: TB_WEB_TOKEN in .env)"
}
stop_web() {
  if pid_alive "$STATE_DIR/web.pid"; then stop_pidfile "web cockpit" "$STATE_DIR/web.pid" 10
  else rm -f "$STATE_DIR/web.pid"; fi
}

start_agents() {
  if ! $PY -m tracer.cli check-config >/dev/null 2>"$STATE_DIR/check-config.err"; then
    cat "$STATE_DIR/check-config.err" >&2
    echo "start_trading_system.sh: configuration invalid; nothing started" >&2
    exit 2
  fi
  $PY -m tracer.cli init-db
  for a in "${AGENTS[@]}"; do
    pidf="$STATE_DIR/$a.pid"
    if pid_alive "$pidf"; then
      echo "$a: already running (pid $(cat "$pidf"))"
      continue
    fi
    nohup $PY "$(script_of "$a")" ${extra[@]+"${extra[@]}"} >/dev/null 2>>"$LOG_DIR/$a.err" &
    echo $! > "$pidf"
    # the agent's options, one per line: a watchdog restarts it with the same command line
    : > "$STATE_DIR/$a.args"
    for x in ${extra[@]+"${extra[@]}"}; do printf '%s\n' "$x" >> "$STATE_DIR/$a.args"; done
    echo "$a: started (pid $!), log $LOG_DIR/$a.log"
  done
  start_watchdogs
  start_listener
  start_web
  echo
  echo "Follow:  tail -f $LOG_DIR/hybrid.log $LOG_DIR/futures.log"
  echo "Status:  ./start_trading_system.sh --status"
  echo "Explain: .venv/bin/tracer explain <client_order_id>"
  echo "Stop:    ./start_trading_system.sh --stop"
}

stop_agents() {
  for a in "${AGENTS[@]}"; do
    stop_pidfile "$a" "$STATE_DIR/$a.pid" 30
  done
}

status_agents() {
  for a in "${AGENTS[@]}"; do
    pidf="$STATE_DIR/$a.pid"
    if pid_alive "$pidf"; then echo "$a: running (pid $(cat "$pidf"))"; else echo "$a: not running"; fi
  done
  for a in "${AGENTS[@]}"; do
    pidf="$STATE_DIR/watchdog_$a.pid"
    if pid_alive "$pidf"; then echo "watchdog_$a: running (pid $(cat "$pidf"))"; else echo "watchdog_$a: not running"; fi
  done
  if pid_alive "$STATE_DIR/telegram.pid"; then echo "telegram listener: running (pid $(cat "$STATE_DIR/telegram.pid"))"; fi
  if pid_alive "$STATE_DIR/web.pid"; then echo "web cockpit: running (pid $(cat "$STATE_DIR/web.pid"))"; fi
  launchd_status
  $PY -m tracer.cli status
}

case "$mode" in
  start) start_agents ;;
  stop) launchd_stop; stop_watchdogs; stop_agents; stop_listener; stop_web ;;
  restart)
    if pid_alive "$STATE_DIR/web.pid"; then web=1; fi    # a running cockpit comes back with the agents
    launchd_stop; stop_watchdogs; stop_agents; stop_listener; stop_web; start_agents ;;
  status) status_agents ;;
  foreground)
    if [ "$web" = 1 ]; then
      echo "start_trading_system.sh: --web starts the cockpit with the background agents; here, run .venv/bin/tracer web in another terminal" >&2
    fi
    $PY -m tracer.cli check-config >/dev/null
    $PY -m tracer.cli init-db
    pids=()
    for a in "${AGENTS[@]}"; do
      $PY "$(script_of "$a")" ${extra[@]+"${extra[@]}"} &
      pids+=($!)
    done
    trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' INT TERM
    rc=0
    for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    exit $rc ;;
esac
