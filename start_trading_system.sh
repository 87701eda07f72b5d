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
# --stop and --status skip the setup step (no pip, no network): they work offline and with a broken .venv.
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
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "start_trading_system.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$cycles" ]; then
  case "$cycles" in ''|*[!0-9]*) echo "--cycles needs a positive integer" >&2; exit 2 ;; esac
  extra+=(--cycles "$cycles")
fi

# Only what starts things runs the setup step: offline, or with a broken .venv, it fails inside pip, and a
# --stop behind it would leave the agents running.
case "$mode" in start|restart|foreground) scripts/bootstrap.sh ;; esac
PY=.venv/bin/python
py_usable() { "$PY" -c 'import tracer.ops.fallback' >/dev/null 2>&1; }

# .env holds API keys: user-only. A copy of .env.example is 0644 (readable by every account on the Mac).
if [ -f .env ] && [ -n "$(find .env -perm -004 -o -perm -040 2>/dev/null)" ]; then
  chmod 600 .env
  echo "start_trading_system.sh: .env was readable by other users; made it user-only (chmod 600)" >&2
fi

# --- where the pid files are ------------------------------------------------------------------------------
# shellcheck source=scripts/shell_lib.sh
. scripts/shell_lib.sh     # dotenv_value; runs PID REGEX (0 yes, 1 no, 2 cannot tell), lock_owners
# shell_path NAME ENV_VALUE ENV_IS_SET DEFAULT: one folder as the config loader reads it (env over .env)
shell_path() {
  local v rc=0
  if [ -n "$3" ]; then
    v=$2
  else
    v=$(dotenv_value "$1") || rc=$?
    if [ "$rc" = 1 ]; then v=$4
    elif [ "$rc" != 0 ]; then echo "start_trading_system.sh: $1 in .env cannot be read without Python" >&2; return 1; fi
  fi
  v=${v#"${v%%[![:space:]]*}"}
  v=${v%"${v##*[![:space:]]}"}
  [ -n "$v" ] || { echo "start_trading_system.sh: $1 is empty" >&2; return 1; }
  case "$v" in \~) v=$HOME ;; \~/*) v="$HOME/${v#\~/}" ;; esac   # what expanduser does
  printf '%s\n' "$v"
}
# STATE_DIR and LOG_DIR as the agents see them. An invalid .env must not send --stop to the default folders
# (it would say "not running" and leave the agents running): the salvaged settings keep every valid variable
# (tracer/ops/fallback.py); without a usable .venv the two variables are read here. Fails, saying why, when
# they cannot be determined. One path per line: "Application Support" keeps its space.
resolve_paths() {
  local paths s l
  if py_usable; then
    paths=$("$PY" -c 'import sys; from tracer.ops.fallback import print_script_paths as p; sys.exit(p())') || return 1
    s=$(printf '%s\n' "$paths" | sed -n 1p)
    l=$(printf '%s\n' "$paths" | sed -n 2p)
  else
    s=$(shell_path TB_STATE_DIR "${TB_STATE_DIR-}" "${TB_STATE_DIR+set}" state) || return 1
    l=$(shell_path TB_LOG_DIR "${TB_LOG_DIR-}" "${TB_LOG_DIR+set}" logs) || return 1
  fi
  STATE_DIR=$s
  LOG_DIR=$l
}
if ! resolve_paths; then
  echo "start_trading_system.sh: cannot tell where the pid files are (TB_STATE_DIR, TB_LOG_DIR): nothing done." \
       "Fix .env (.venv/bin/tracer check-config) or set them in the environment" >&2
  exit 2
fi
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

# --- processes: a pid file counts only while its pid runs what it names ---------------------------------------
what_of() {   # NAME: what the command line of NAME's process contains (an extended regex)
  case "$1" in
    # watchdog.sh AGENT --exec writes its pid, then execs the agent; a bare "watchdog" would also match macOS's
    # own watchdogd, or this checkout's watchdog loops, holding a recycled pid after a reboot
    hybrid) echo 'hybrid_crypto_trader[.]py|watchdog([.]sh hybrid|_hybrid[.]sh) --exec' ;;
    futures) echo 'high_risk_futures_agent[.]py|watchdog([.]sh futures|_futures[.]sh) --exec' ;;
    # that agent's loop: --loop (started here or by the heal) or --supervise (the launchd job); never the other
    # agent's loop on a recycled pid
    watchdog_hybrid|watchdog_futures)
      echo "watchdog([.]sh ${1#watchdog_}|_${1#watchdog_}[.]sh) --(loop|supervise)( |\$)" ;;
    telegram) echo 'telegram_listener[.]py' ;;
    web) echo 'tracer[.]cli web' ;;
  esac
}
pid_of() { cat "$STATE_DIR/$1.pid" 2>/dev/null || true; }
# running NAME: $STATE_DIR/NAME.pid names a live process that runs NAME (1: it does not; 2: a live pid whose
# command line cannot be read). After a reboot the pid may belong to another program: that is never reported
# as running, nor signalled (tracer.ops.processes.agent_alive, in shell).
running() {
  local pid
  pid=$(pid_of "$1")
  case "$pid" in ''|*[!0-9]*) return 1 ;; esac
  runs "$pid" "$(what_of "$1")"
}
# present NAME LABEL: before starting NAME, 0 when it must not be started: it runs ("LABEL: already running"), or
# its pid file names a live process whose command line cannot be read here (cannot tell: a second copy beside
# it could share the DB, so none is started, saying so); 1 when it does not run.
present() {
  local rc=0
  running "$1" || rc=$?
  case "$rc" in
    0) echo "$2: already running (pid $(pid_of "$1"))" ;;
    2) echo "$2: pid $(pid_of "$1") is alive but its command line cannot be read here: cannot tell whether it" \
            "is $2; not starting a second copy (check it with ps; remove $STATE_DIR/$1.pid if it is not)" >&2 ;;
    *) return 1 ;;
  esac
}

# --- launch locks: $STATE_DIR/<agent>.launch.lock (owner pid inside), shared with scripts/watchdog.sh and the
# health check's heal. Whoever starts or stops an agent holds it: a watchdog pass never restarts an agent that
# --stop is stopping, nor writes a pid file that the stop then removes.
LOCKS=""        # the locks held, one per line (the state folder may have spaces)
LOCK_OWNER=""
lock_take() {   # AGENT SECONDS: waits up to SECONDS for the holder; a lock whose owner is gone is taken over
  local dir="$STATE_DIR/$1.launch.lock" owner n=0 rc
  until mkdir "$dir" 2>/dev/null; do
    owner=$(cat "$dir/pid" 2>/dev/null || true)
    if [ "$n" -ge "$2" ]; then LOCK_OWNER=${owner:-"(starting)"}; return 1; fi
    n=$((n + 1))
    rc=0
    [ -z "$owner" ] || runs "$owner" "$(lock_owners "$1")" || rc=$?
    if { [ -n "$owner" ] && [ "$rc" = 1 ]; } \
        || { [ -z "$owner" ] && [ -n "$(find "$dir" -maxdepth 0 -mmin +1 2>/dev/null)" ]; }; then
      rm -rf "$dir"
    else
      sleep 1
    fi
  done
  echo "$$" > "$dir/pid"
  LOCKS="$LOCKS$dir
"
}
locks_release() {
  local d
  while IFS= read -r d; do
    [ -n "$d" ] || continue
    if [ "$(cat "$d/pid" 2>/dev/null || true)" = "$$" ]; then rm -rf "$d"; fi
  done <<LOCKS_HELD
$LOCKS
LOCKS_HELD
  LOCKS=""
}
on_exit() { locks_release; }
trap on_exit EXIT
trap 'exit 130' INT        # a signal ends the script through its EXIT trap: no lock is left behind
trap 'exit 143' TERM

# --- launchd (macOS, scripts/install_launchd.sh): when this checkout's jobs are installed, launchd keeps each
# agent's watchdog loop alive (and the loop the agent), so a start loads them instead of starting loops here, and a
# stop boots them out AND disables them: a job left loaded (or only unloaded) comes back at the next login.
# A job runs the folder its file names (WorkingDirectory): one installed from another checkout (this one moved,
# copied or cloned anew) is never loaded nor stopped from here; its supervisor would start THAT folder's agents
# beside these, trading with the same keys.
LAUNCH_DIR="$HOME/Library/LaunchAgents"
LAUNCHD_AGENT_JOBS="com.tracerbullet.hybrid com.tracerbullet.futures"
LAUNCHD_HEALTH=com.tracerbullet.health
LAUNCHD_JOBS="$LAUNCHD_AGENT_JOBS $LAUNCHD_HEALTH"
HERE=$(pwd -P)
launchd_installed() {   # the installed jobs this script manages, one per line (none without launchctl)
  local l
  command -v launchctl >/dev/null 2>&1 || return 0
  for l in $LAUNCHD_JOBS; do [ -f "$LAUNCH_DIR/$l.plist" ] && echo "$l"; done
  return 0
}
launchd_domain="gui/$(id -u)"
launchd_loaded() { launchctl print "$launchd_domain/$1" >/dev/null 2>&1; }
in_list() { case " $2 " in *" $1 "*) return 0 ;; esac; return 1; }   # WORD LIST (space-separated)
PY_OK=no   # set by launchd_scan (once: each run of py_usable starts Python)
plist_workdir() {   # FILE: its WorkingDirectory (plutil's raw format: macOS 12+; else the .venv's plistlib)
  local wd=""
  if command -v plutil >/dev/null 2>&1; then
    wd=$(plutil -extract WorkingDirectory raw -o - "$1" 2>/dev/null) || wd=""
  fi
  if [ -z "$wd" ] && [ "$PY_OK" = yes ]; then
    wd=$("$PY" -c 'import plistlib, sys; print(plistlib.load(open(sys.argv[1], "rb"))["WorkingDirectory"])' "$1" \
           2>/dev/null) || wd=""
  fi
  if [ -z "$wd" ]; then return 1; fi
  printf '%s\n' "$wd"
}
# The installed jobs by the folder they run: this checkout's (LAUNCHD_MINE), another's (LAUNCHD_OTHER), or one
# whose file cannot be read here (LAUNCHD_UNREAD: a stop still boots it out, a start does not load it).
LAUNCHD_SCANNED=0 LAUNCHD_MINE="" LAUNCHD_OTHER="" LAUNCHD_UNREAD=""
launchd_scan() {
  local l wd jobs
  [ "$LAUNCHD_SCANNED" = 0 ] || return 0
  LAUNCHD_SCANNED=1
  jobs=$(launchd_installed)
  [ -n "$jobs" ] || return 0
  if py_usable; then PY_OK=yes; fi
  for l in $jobs; do
    if ! wd=$(plist_workdir "$LAUNCH_DIR/$l.plist"); then LAUNCHD_UNREAD="$LAUNCHD_UNREAD $l"
    elif [ "$wd" = "$HERE" ] || [ "$(cd "$wd" 2>/dev/null && pwd -P)" = "$HERE" ]; then LAUNCHD_MINE="$LAUNCHD_MINE $l"
    else LAUNCHD_OTHER="$LAUNCHD_OTHER $l"; fi
  done
}
launchd_other() {   # LABEL: the line about a job of another checkout
  local wd
  wd=$(plist_workdir "$LAUNCH_DIR/$1.plist") || wd="?"
  if launchd_loaded "$1"; then
    echo "launchd: $1 is installed for another checkout ($wd) and loaded: it supervises that folder's agents;" \
         "not used here (if they must not trade beside these: $(printf '%q' "$wd/start_trading_system.sh") --stop)"
  else
    echo "launchd: $1 is installed for another checkout ($wd), not this one: not used here"
  fi
}
launchd_load() {   # LABEL: enable and load one job of this checkout
  launchctl enable "$launchd_domain/$1" 2>/dev/null || true
  if launchd_loaded "$1"; then echo "launchd: $1 already loaded"; return 0; fi
  if launchctl bootstrap "$launchd_domain" "$LAUNCH_DIR/$1.plist" 2>/dev/null; then echo "launchd: $1 loaded"
  else echo "launchd: $1 could not be loaded (see: launchctl print $launchd_domain/$1)" >&2; fi
}
launchd_bootout() {   # LABEL: fails when the job is still loaded after its bootout
  local n=0
  launchctl bootout "$launchd_domain/$1" 2>/dev/null || true   # "not loaded" fails too: what counts is below
  while launchd_loaded "$1" && [ "$n" -lt 10 ]; do sleep 0.5; n=$((n + 1)); done
  ! launchd_loaded "$1"
}
# The health job whatever TB_WATCHDOG_ENABLED says (a --stop disabled it); the agents' jobs are their watchdog
# loops: loaded with watchdogs on, booted out and disabled with them off.
launchd_start() {   # WATCHDOGS (1 on, 0 off)
  local l own=""
  launchd_scan
  for l in $LAUNCHD_OTHER; do launchd_other "$l" >&2; done
  if [ -n "$LAUNCHD_OTHER" ]; then
    if [ "$1" = 1 ]; then own=" (meanwhile this start runs its own watchdog loops)"; fi
    echo "  to use launchd for this folder, run scripts/install_launchd.sh from it$own" >&2
  fi
  for l in $LAUNCHD_UNREAD; do
    echo "launchd: $l: cannot tell which checkout it runs (its WorkingDirectory cannot be read): not loaded" >&2
  done
  if in_list "$LAUNCHD_HEALTH" "$LAUNCHD_MINE"; then launchd_load "$LAUNCHD_HEALTH"; fi
  for l in $LAUNCHD_AGENT_JOBS; do
    in_list "$l" "$LAUNCHD_MINE" || continue
    if [ "$1" = 1 ]; then launchd_load "$l"; continue; fi
    if ! launchd_loaded "$l"; then :
    elif launchd_bootout "$l"; then echo "launchd: $l unloaded (TB_WATCHDOG_ENABLED=false)"
    else echo "launchd: $l is still loaded after launchctl bootout: its watchdog loop goes on although" \
              "TB_WATCHDOG_ENABLED=false (try: launchctl bootout $launchd_domain/$l)" >&2; fi
    launchctl disable "$launchd_domain/$l" 2>/dev/null || true
  done
}
# Fails when a job is still loaded after its bootout: its KeepAlive would start the agents again behind the stop.
launchd_stop() {
  local l
  launchd_scan
  for l in $LAUNCHD_MINE $LAUNCHD_UNREAD; do
    if ! launchd_bootout "$l"; then
      echo "launchd: $l is still loaded after launchctl bootout: nothing stopped (launchd would start the" \
           "agents again). Try: launchctl bootout $launchd_domain/$l, then ./start_trading_system.sh --stop" >&2
      return 1
    fi
    launchctl disable "$launchd_domain/$l" 2>/dev/null || true
    echo "launchd: $l unloaded and disabled (not started at login until ./start_trading_system.sh)"
  done
  for l in $LAUNCHD_OTHER; do if launchd_loaded "$l"; then launchd_other "$l"; fi; done
}
launchd_status() {
  local l
  launchd_scan
  for l in $LAUNCHD_MINE; do
    if launchd_loaded "$l"; then echo "launchd: $l loaded"; else echo "launchd: $l installed, not loaded"; fi
  done
  for l in $LAUNCHD_OTHER; do launchd_other "$l"; done
  for l in $LAUNCHD_UNREAD; do
    echo "launchd: $l installed; which checkout it runs cannot be told here (plutil or the .venv's Python reads it)"
  done
  if [ -n "$LAUNCHD_OTHER" ]; then echo "  scripts/install_launchd.sh from this folder installs the jobs for it"; fi
}

# Watchdogs: one scripts/watchdog_<agent>.sh --loop per agent (pid file watchdog_<agent>.pid), restarting a
# dead or hung agent (README "Operations"); off with TB_WATCHDOG_ENABLED=false. An agent whose job of this
# checkout is installed has launchd run its loop instead.
start_watchdogs() {
  local a on=0
  if [ "$($PY -c 'from tracer.config import load_settings as l; print(l().watchdog_enabled)' 2>/dev/null)" = True ]; then
    on=1
  fi
  launchd_start "$on"
  if [ "$on" = 0 ]; then echo "watchdogs: disabled (TB_WATCHDOG_ENABLED=false)"; return 0; fi
  for a in "${AGENTS[@]}"; do
    if in_list "com.tracerbullet.$a" "$LAUNCHD_MINE"; then continue; fi    # launchd runs its loop
    if present "watchdog_$a" "watchdog_$a"; then continue; fi
    nohup "scripts/watchdog_$a.sh" --loop >/dev/null 2>>"$LOG_DIR/watchdog.err" </dev/null &
    echo $! > "$STATE_DIR/watchdog_$a.pid"
    echo "watchdog_$a: started (pid $!), log $LOG_DIR/watchdog.log"
  done
}
# stop_proc NAME LABEL SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL. Prints "LABEL: stopped" (or "LABEL:
# not running", removing a stale pid file). The pid file goes only while it still names the pid stopped here;
# one written meanwhile by another start is left, and the stop fails saying so.
stop_proc() {
  local pidf="$STATE_DIR/$1.pid" label="$2" secs="$3" pid re now rc=0
  running "$1" || rc=$?
  if [ "$rc" = 2 ]; then     # never signal a process that cannot be confirmed to be ours
    echo "$label: pid $(pid_of "$1") is alive but its command line cannot be read here: not signalled;" \
         "check it (ps) and remove $pidf" >&2
    return 1
  fi
  if [ "$rc" = 1 ]; then
    rm -f "$pidf"; echo "$label: not running"; return 0
  fi
  pid=$(pid_of "$1") re=$(what_of "$1")
  kill -TERM "$pid" 2>/dev/null || true
  # runs, not kill -0: an exited process its parent has not reaped yet (a zombie) is stopped
  for _ in $(seq 1 $((secs * 5))); do runs "$pid" "$re" || break; sleep 0.2; done
  if runs "$pid" "$re"; then
    echo "$label: did not stop within $secs s, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
  fi
  now=$(pid_of "$1")
  if [ -n "$now" ] && [ "$now" != "$pid" ]; then
    echo "$label: stopped pid $pid, but $pidf now names pid $now (started meanwhile): run --stop again" >&2
    return 1
  fi
  rm -f "$pidf"
  echo "$label: stopped"
}
stop_quietly() {   # NAME LABEL SECONDS: stop_proc, without a "not running" line
  local rc=0
  running "$1" || rc=$?
  if [ "$rc" = 1 ]; then rm -f "$STATE_DIR/$1.pid"; else stop_proc "$@"; fi
}
stop_watchdogs() {   # before the agents, so that no watchdog restarts an agent being stopped
  local a rc=0
  for a in "${AGENTS[@]}"; do stop_quietly "watchdog_$a" "watchdog_$a" 10 || rc=1; done
  return $rc
}

# Telegram listener: the one process that polls the bot (commands /status /pause ...), acting on the agents
# through the DB, and delivering the outbox while the agents are down; only when Telegram is configured.
start_listener() {
  if [ "$($PY -c 'from tracer.config import load_settings as l; s=l(); print(bool(s.telegram_bot_token and s.telegram_chat_id))' 2>/dev/null)" != True ]; then
    return 0
  fi
  if present telegram "telegram listener"; then return 0; fi
  nohup $PY scripts/telegram_listener.py >/dev/null 2>>"$LOG_DIR/telegram.err" </dev/null &
  echo $! > "$STATE_DIR/telegram.pid"
  echo "telegram listener: started (pid $!), log $LOG_DIR/telegram.log"
}

# The web cockpit (tracer web, --web only): 127.0.0.1:TB_WEB_PORT. A missing token is generated into .env; it is
# shown only on a terminal: from cron or launchd, or redirected into start.log, it would land in a log.
start_web() {
  [ "$web" = 1 ] || return 0
  if present web "web cockpit"; then return 0; fi
  if [ -t 1 ]; then
    $PY -m tracer.cli web --init-token
  else
    $PY -m tracer.cli web --init-token >/dev/null
    echo "web cockpit: the access token is TB_WEB_TOKEN in .env (not printed here: this output is no terminal)"
  fi
  nohup $PY -m tracer.cli web >/dev/null 2>>"$LOG_DIR/web.err" </dev/null &
  echo $! > "$STATE_DIR/web.pid"
  echo "web cockpit: started (pid $!), http://127.0.0.1:$($PY -c 'from tracer.config import load_settings as l; print(l().web_port)' 2>/dev/null || echo 8787)/ (token: TB_WEB_TOKEN in .env)"
}

write_args() {   # AGENT: its options, one per line: a watchdog restarts it with the same command line
  : > "$STATE_DIR/$1.args"
  for x in ${extra[@]+"${extra[@]}"}; do printf '%s\n' "$x" >> "$STATE_DIR/$1.args"; done
}

check_config() {
  if ! $PY -m tracer.cli check-config >/dev/null 2>"$STATE_DIR/check-config.err"; then
    cat "$STATE_DIR/check-config.err" >&2
    echo "start_trading_system.sh: configuration invalid; nothing started" >&2
    exit 2
  fi
}

# An agent that exits at once (it refuses to run beside another copy on the same DB, e.g. one left on an old
# TB_STATE_DIR) is said so, not reported started: polled until it holds its lock beside the DB, or 10 s.
STARTED=()      # "agent:pid" of the agents this run launched
START_FAILED=0
confirm_started() {
  [ ${#STARTED[@]} -gt 0 ] || return 0
  local db item a pid n=0 left next
  db=$($PY -c 'from tracer.config import load_settings as l; print(l().db_path)' 2>/dev/null) || db=""
  left=("${STARTED[@]}")
  while [ ${#left[@]} -gt 0 ] && [ "$n" -lt 100 ]; do
    next=()
    for item in "${left[@]}"; do
      a=${item%%:*}; pid=${item#*:}
      if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$STATE_DIR/$a.pid"
        echo "$a: exited at once: $(tail -n 1 "$LOG_DIR/$a.err" 2>/dev/null)" >&2
        START_FAILED=1
      elif [ -z "$db" ] || [ "$(cat "$db.$a.instance" 2>/dev/null)" != "$pid" ]; then
        next+=("$item")
      fi
    done
    left=(${next[@]+"${next[@]}"})
    [ ${#left[@]} -eq 0 ] || sleep 0.1
    n=$((n + 1))
  done
}

start_agents() {
  check_config
  $PY -m tracer.cli init-db
  for a in "${AGENTS[@]}"; do
    if ! lock_take "$a" 60; then
      echo "$a: a start or stop of it is in progress (pid $LOCK_OWNER): not started" >&2
      continue
    fi
    if present "$a" "$a"; then
      :
    else
      nohup $PY "$(script_of "$a")" ${extra[@]+"${extra[@]}"} >/dev/null 2>>"$LOG_DIR/$a.err" &
      echo $! > "$STATE_DIR/$a.pid"
      STARTED+=("$a:$!")
      write_args "$a"
      echo "$a: started (pid $!), log $LOG_DIR/$a.log"
    fi
    locks_release
  done
  confirm_started
  start_watchdogs
  start_listener
  start_web
  echo
  # absolute and shell-quoted: they work pasted from any folder, with spaces in the path ("Application Support");
  # tail -F follows a log across its rotation (tail -f stays on the renamed file)
  local here logs
  here=$(pwd -P)
  logs=$(cd "$LOG_DIR" && pwd -P)
  echo "Follow:  tail -F $(printf '%q' "$logs/hybrid.log") $(printf '%q' "$logs/futures.log")"
  echo "Status:  $(printf '%q' "$here/start_trading_system.sh") --status"
  # explain reads TB_DB_PATH, relative to the checkout by default: run from there
  echo "Explain: cd $(printf '%q' "$here") && .venv/bin/tracer explain <client_order_id>"
  echo "Stop:    $(printf '%q' "$here/start_trading_system.sh") --stop"
}

# The whole stop holds every agent's launch lock: a watchdog pass (cron, a loop not yet stopped) or the health
# check's heal cannot start an agent behind it. A watchdog in the middle of a restart is waited for (its grace,
# TB_WATCHDOG_STOP_GRACE_S, is 30 s by default).
stop_all() {
  local a rc=0
  for a in "${AGENTS[@]}"; do
    if ! lock_take "$a" 60; then
      echo "$a: its launch lock is still held by pid $LOCK_OWNER after 60 s: stopping anyway" >&2
    fi
  done
  launchd_stop || exit 1
  stop_watchdogs || rc=1
  for a in "${AGENTS[@]}"; do stop_proc "$a" "$a" 30 || rc=1; done
  stop_quietly telegram "telegram listener" 30 || rc=1
  stop_quietly web "web cockpit" 10 || rc=1
  locks_release
  return $rc
}

status_of() {   # NAME LABEL [quiet]: LABEL's line (quiet: none when it does not run)
  local rc=0
  running "$1" || rc=$?
  case "$rc" in
    0) echo "$2: running (pid $(pid_of "$1"))" ;;
    2) echo "$2: cannot tell (pid $(pid_of "$1") is alive but its command line cannot be read here)" ;;
    *) [ -n "${3-}" ] || echo "$2: not running" ;;
  esac
}
status_agents() {
  for a in "${AGENTS[@]}"; do status_of "$a" "$a"; done
  for a in "${AGENTS[@]}"; do status_of "watchdog_$a" "watchdog_$a"; done
  status_of telegram "telegram listener" quiet
  status_of web "web cockpit" quiet
  launchd_status
  if py_usable; then
    $PY -m tracer.cli status
  else
    echo "(heartbeats, cash and trades need the .venv, which does not run here: scripts/bootstrap.sh sets it up)"
  fi
}

# --foreground: the agents are children of this shell, with pid files like background ones (the watchdog, the
# health check and --status see them, and a second start finds them running); never beside running agents,
# which would share the DB.
fg_pids=()
fg_cleanup() {   # the pid files of this run only (one rewritten since by someone else stays)
  local i=0 a
  for a in "${AGENTS[@]}"; do
    if [ "${#fg_pids[@]}" -gt "$i" ] && [ "$(pid_of "$a")" = "${fg_pids[$i]}" ]; then rm -f "$STATE_DIR/$a.pid"; fi
    i=$((i + 1))
  done
}
run_foreground() {
  local a p r rc=0
  if [ "$web" = 1 ]; then
    echo "start_trading_system.sh: --web starts the cockpit with the background agents; here, run .venv/bin/tracer web in another terminal" >&2
  fi
  check_config
  $PY -m tracer.cli init-db
  for a in "${AGENTS[@]}"; do
    if ! lock_take "$a" 60; then
      echo "start_trading_system.sh: a start or stop of $a is in progress (pid $LOCK_OWNER): nothing started" >&2
      exit 1
    fi
    r=0; running "$a" || r=$?
    if [ "$r" = 0 ]; then
      echo "start_trading_system.sh: $a already runs in the background (pid $(pid_of "$a")): two copies would" \
           "share one DB; stop it first (./start_trading_system.sh --stop)" >&2
      exit 1
    elif [ "$r" = 2 ]; then   # cannot tell: no second copy beside it either
      echo "start_trading_system.sh: $a may run in the background: pid $(pid_of "$a") is alive but its command" \
           "line cannot be read here; two copies would share one DB: not starting (check it with ps; remove" \
           "$STATE_DIR/$a.pid if it is not $a)" >&2
      exit 1
    fi
  done
  trap 'fg_cleanup; locks_release' EXIT
  for a in "${AGENTS[@]}"; do
    $PY "$(script_of "$a")" ${extra[@]+"${extra[@]}"} &
    fg_pids+=($!)
    echo $! > "$STATE_DIR/$a.pid"
    write_args "$a"
  done
  locks_release
  trap 'kill -TERM "${fg_pids[@]}" 2>/dev/null || true' INT TERM HUP
  for p in "${fg_pids[@]}"; do
    # a trap interrupts wait (status > 128) while the agent is still finishing: wait again
    until wait "$p"; do
      r=$?
      if ! kill -0 "$p" 2>/dev/null; then rc=$r; break; fi
    done
  done
  exit $rc
}

case "$mode" in
  start) start_agents; exit "$START_FAILED" ;;
  stop) stop_all ;;
  restart)
    r=0; running web || r=$?
    if [ "$r" != 1 ]; then web=1; fi    # a running cockpit (or one that cannot be told apart) comes back
    check_config                      # a typo in .env must not leave the system stopped
    stop_all
    start_agents; exit "$START_FAILED" ;;
  status) status_agents ;;
  foreground) run_foreground ;;
esac
