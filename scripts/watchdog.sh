#!/usr/bin/env bash
# Watchdog of one agent: restarts it when its process is gone or its heartbeat is stale.
#
#   scripts/watchdog.sh AGENT              one pass, then exit (cron)
#   scripts/watchdog.sh AGENT --loop       a pass every TB_WATCHDOG_INTERVAL_S seconds until SIGTERM
#   scripts/watchdog.sh AGENT --supervise [ARG]  the launchd job (KeepAlive): start the agent when it has no
#                                          pid file or died (a clean stop is left alone), then --loop; waits
#                                          (never exits) while another loop runs
#   scripts/watchdog.sh AGENT --exec [ARG] run the agent in the foreground with its pid file; when it is
#                                          already running or being started, exit 75 (a supervisor
#                                          retries; never 0, which KeepAlive would take as "done")
#
# Who supervises what: launchd (or ./start_trading_system.sh, or cron) keeps the watchdog loop alive; the
# loop keeps the agent alive; the health check (--heal) restarts a dead loop or listener.
# AGENT is hybrid or futures; scripts/watchdog_hybrid.sh and scripts/watchdog_futures.sh call this.
# The decision (ok / absent / stopped / restart / capped) comes from `tracer watchdog-check` (tracer/ops/):
# down = pid gone or heartbeat older than TB_WATCHDOG_MAX_HEARTBEAT_AGE_MIN of awake time (time the machine slept
# is not counted: tracer/ops/suspend.py, $TB_STATE_DIR/suspend_watchdog_AGENT.json); an agent that stopped
# cleanly or has no pid file is left alone; at most TB_WATCHDOG_MAX_RESTARTS_PER_HOUR restarts, then an alert
# and no more tries. A restart uses the agent's recorded command line ($TB_STATE_DIR/AGENT.args), a hung agent
# gets SIGTERM, then SIGKILL after TB_WATCHDOG_STOP_GRACE_S. Every action: $TB_LOG_DIR/watchdog.log.
# A lock directory ($TB_STATE_DIR/watchdog_AGENT.lock, holding the owner pid) keeps copies from piling up:
# a second copy exits at once (status 0); a lock whose owner is gone is taken over.
# Exit 2, nothing done, when TB_STATE_DIR or TB_LOG_DIR is itself invalid (the pid files cannot be found).
set -euo pipefail
umask 077   # state, logs, pid and lock files: user-only (they can hold tracebacks and account data)
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/watchdog.sh hybrid|futures [--loop | --supervise [AGENT OPTIONS] | --exec [AGENT OPTIONS]]" >&2; exit 2; }
agent="${1:-}"
case "$agent" in
  hybrid) script=scripts/hybrid_crypto_trader.py ;;
  futures) script=scripts/high_risk_futures_agent.py ;;
  -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
  *) usage ;;
esac
shift
mode=pass
if [ $# -gt 0 ]; then
  case "$1" in
    --loop) mode=loop; shift; [ $# -eq 0 ] || usage ;;
    --exec) mode="exec"; shift ;;
    --supervise) mode=supervise; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) usage ;;
  esac
fi

PY=.venv/bin/python
[ -x "$PY" ] || { echo "watchdog[$agent]: $PY is missing (run ./start_trading_system.sh once)" >&2; exit 2; }
# an invalid .env must not silence the watchdog: the salvaged settings find the pid files, and each pass
# reports (and alerts) the invalid configuration instead of restarting onto it. When TB_STATE_DIR or TB_LOG_DIR
# is itself invalid the pid files cannot be found: exit 2 saying why (stderr, and logs/alerts.log when the log
# folder is known), never a guess at state/ (a duplicate agent, or a live one declared dead)
cfg_rc=0
cfg=$("$PY" -c 'import sys; from tracer.ops.fallback import print_watchdog_config as p; sys.exit(p(sys.argv[1]))' \
  "$agent") || cfg_rc=$?
case "$cfg_rc" in
  0) ;;
  3) exit 2 ;;        # print_watchdog_config said why
  *) echo "watchdog[$agent]: $PY cannot load tracer (run scripts/bootstrap.sh)" >&2; exit 2 ;;
esac
STATE_DIR=$(printf '%s\n' "$cfg" | sed -n 1p)
LOG_DIR=$(printf '%s\n' "$cfg" | sed -n 2p)
INTERVAL=$(printf '%s\n' "$cfg" | sed -n 3p)
GRACE_STEPS=$(printf '%s\n' "$cfg" | sed -n 4p)
mkdir -p "$STATE_DIR" "$LOG_DIR"
PIDF="$STATE_DIR/$agent.pid"
ARGSF="$STATE_DIR/$agent.args"

say() { echo "watchdog[$agent]: $*"; }
log() {
  printf '%s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$agent" "$*" >> "$LOG_DIR/watchdog.log"
  say "$*"
}

# --- mkdir locks: DIR/pid names the owner; an owner that is gone (or is none of this agent's lock takers,
# lock_owners) leaves a stale lock. The takers: this script for this agent, start_trading_system.sh (start,
# stop) and the health check's heal.
# shellcheck source=shell_lib.sh
. scripts/shell_lib.sh
OWNERS_RE=$(lock_owners "$agent")
# the agent itself, or a watchdog.sh AGENT --exec wrapper between writing the pid file and its exec (what
# tracer's agent_alive and the start script's what_of count as the agent)
AGENT_RE="${script//./[.]}|watchdog([.]sh ${agent}|_${agent}[.]sh) --exec( |\$)"
HELD=""        # the locks this process holds, one per line (the state folder may have spaces)
LOCK_OWNER=""
owner_alive() {  # a live lock taker; one whose command line cannot be read counts as alive (never taken over)
  local rc=0
  runs "$1" "$OWNERS_RE" || rc=$?
  [ "$rc" != 1 ]
}
# The TERM handler in force, kept here: lock_acquire swaps it out for a moment. `$(trap -p TERM)` cannot
# save it: a command substitution sees the caller's traps only from bash 4.2, and macOS has bash 3.2.
TERM_ACTION="exit 143"
on_term() { TERM_ACTION="$1"; trap 'eval "$TERM_ACTION"' TERM; }
lock_acquire() {
  local dir="$1" owner tries=0
  while [ $tries -lt 3 ]; do
    tries=$((tries + 1))
    # a SIGTERM between mkdir and writing the pid would leave an ownerless lock: hold it until the
    # pid is written, then deliver it
    TERM_PENDING=""
    trap 'TERM_PENDING=1' TERM
    if mkdir "$dir" 2>/dev/null; then
      echo "$$" > "$dir/pid"
      HELD="$HELD$dir
"
      trap 'eval "$TERM_ACTION"' TERM
      [ -z "$TERM_PENDING" ] || kill -TERM $$
      return 0
    fi
    trap 'eval "$TERM_ACTION"' TERM
    [ -z "$TERM_PENDING" ] || kill -TERM $$
    owner=$(cat "$dir/pid" 2>/dev/null || true)
    if [ -n "$owner" ] && owner_alive "$owner"; then LOCK_OWNER="$owner"; return 1; fi
    if [ -z "$owner" ] && [ -z "$(find "$dir" -maxdepth 0 -mmin +1 2>/dev/null)" ]; then
      LOCK_OWNER="(starting)"; return 1            # just created by another copy, pid not written yet
    fi
    # stale: re-check that nobody took it over in between, then remove it and try again
    [ "$(cat "$dir/pid" 2>/dev/null || true)" = "$owner" ] || continue
    log "stale lock $dir (owner ${owner:-unknown} is gone): taken over"
    rm -rf "$dir"
  done
  LOCK_OWNER="(contended)"
  return 1
}
lock_release() {
  local dir="$1" d rest=""
  if [ "$(cat "$dir/pid" 2>/dev/null || true)" = "$$" ]; then rm -rf "$dir"; fi
  while IFS= read -r d; do
    if [ -n "$d" ] && [ "$d" != "$dir" ]; then rest="$rest$d
"; fi
  done <<HELD_LOCKS
$HELD
HELD_LOCKS
  HELD=$rest
}
sleeper=""
cleanup() {
  local d
  [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null || true
  while IFS= read -r d; do
    if [ -n "$d" ] && [ "$(cat "$d/pid" 2>/dev/null || true)" = "$$" ]; then rm -rf "$d"; fi
  done <<HELD_LOCKS
$HELD
HELD_LOCKS
  return 0
}
trap cleanup EXIT
on_term 'exit 143'
trap 'exit 130' INT

# --- the agent's command line: the same as start_trading_system.sh's (options recorded in AGENT.args) -------
args=()
load_args() {
  local line
  args=()
  [ -f "$ARGSF" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    [ -z "$line" ] || args+=("$line")
  done < "$ARGSF"
}
launch() {  # start the agent in the background, write its pid file; sets new_pid
  load_args
  nohup "$PY" "$script" ${args[@]+"${args[@]}"} >/dev/null 2>>"$LOG_DIR/$agent.err" </dev/null &
  new_pid=$!
  echo "$new_pid" > "$PIDF"
}
stop_pid() {  # SIGTERM, wait up to TB_WATCHDOG_STOP_GRACE_S, then SIGKILL. 1: not signalled (cannot tell)
  local pid="$1" i=0 rc=0
  runs "$pid" "$AGENT_RE" || rc=$?
  case "$rc" in
    1) return 0 ;;            # gone meanwhile (or no longer the agent): nothing to stop
    2) log "pid $pid is alive but its command line cannot be read: not signalled, nothing started"; return 1 ;;
  esac
  log "stopping pid $pid: SIGTERM"
  kill -TERM "$pid" 2>/dev/null || return 0
  while [ $i -lt "$GRACE_STEPS" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.2; i=$((i + 1)); done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid still there after the grace period: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    i=0
    while [ $i -lt 25 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.2; i=$((i + 1)); done
  fi
}

one_pass() {
  local out action rest pid state reason
  if ! out=$("$PY" -m tracer.cli watchdog-check "$agent" 2>/dev/null); then
    log "error: tracer watchdog-check failed; nothing done"
    "$PY" -m tracer.cli alert watchdog_error "🚨 watchdog of $agent: the check itself failed; nothing done" \
      --agent "$agent" --repeat-key "watchdog_error_$agent" >/dev/null 2>&1 || true
    return 0
  fi
  # <action> <pid|-> <alive|gone> <reason>
  action=${out%% *}; rest=${out#* }; pid=${rest%% *}; rest=${rest#* }; state=${rest%% *}; reason=${rest#* }
  case "$action" in
    ok|absent|stopped|capped) say "$action: $reason" ;;
    error) log "error: $reason; nothing done" ;;
    restart)
      if ! lock_acquire "$STATE_DIR/$agent.launch.lock"; then
        say "another start of $agent is in progress (pid $LOCK_OWNER); nothing done"
        return 0
      fi
      if [ "$pid" != "-" ] && [ "$(cat "$PIDF" 2>/dev/null || true)" != "$pid" ]; then   # started meanwhile
        lock_release "$STATE_DIR/$agent.launch.lock"
        say "pid file changed meanwhile; nothing done"
        return 0
      fi
      log "down: $reason"
      # only a pid that tracer verified to be this agent is signalled (never a recycled one)
      if [ "$state" = alive ] && [ "$pid" != "-" ] && ! stop_pid "$pid"; then
        lock_release "$STATE_DIR/$agent.launch.lock"
        return 0
      fi
      launch
      lock_release "$STATE_DIR/$agent.launch.lock"
      "$PY" -m tracer.cli watchdog-restarted "$agent" --old-pid "${pid//-/0}" --new-pid "$new_pid" \
        --reason "$reason" >/dev/null || log "error: could not record the restart"
      say "restarted: new pid $new_pid"
      ;;
    *) log "error: unexpected answer from tracer watchdog-check: $out" ;;
  esac
}

case "$mode" in
  pass)
    if ! lock_acquire "$STATE_DIR/watchdog_$agent.lock"; then
      say "another watchdog of $agent is running (pid $LOCK_OWNER); exiting"
      exit 0
    fi
    one_pass
    ;;
  loop|supervise)
    if [ "$mode" = supervise ]; then
      # under KeepAlive an exit would only be retried in a few seconds: wait for the lock instead
      until lock_acquire "$STATE_DIR/watchdog_$agent.lock"; do
        say "another watchdog of $agent is running (pid $LOCK_OWNER); waiting"
        sleep "$INTERVAL" & sleeper=$!; wait "$sleeper" || true; sleeper=""
      done
    elif ! lock_acquire "$STATE_DIR/watchdog_$agent.lock"; then
      say "another watchdog of $agent is running (pid $LOCK_OWNER); exiting"
      exit 0
    fi
    echo "$$" > "$STATE_DIR/watchdog_$agent.pid"     # whoever started the loop: --status and --heal find it
    if [ "$mode" = supervise ]; then
      if [ $# -gt 0 ]; then : > "$ARGSF"; for a in "$@"; do printf '%s\n' "$a" >> "$ARGSF"; done; fi
      # a load (login, KeepAlive after a crash of this loop) starts the agent only when it was never started
      # (no pid file), died, or was stopped by a signal with its pid file kept (the OS's SIGTERM at a shutdown or
      # logout; --stop removes the file); one that stopped cleanly (end of data, --cycles), was given up on, or
      # runs on an invalid config is left to the loop's passes, which say why
      if lock_acquire "$STATE_DIR/$agent.launch.lock"; then
        verdict=$("$PY" -m tracer.cli watchdog-check "$agent" 2>/dev/null || echo "error - gone watchdog-check failed")
        case "$verdict" in
          "absent "*|"restart "*" gone "*|"stopped "*"stopped by a signal"*)
            launch
            log "started by the supervisor (pid $new_pid): ${verdict#* * * }" ;;
          *) say "not started by the supervisor: $verdict" ;;
        esac
        lock_release "$STATE_DIR/$agent.launch.lock"
      fi
    fi
    log "loop started (pid $$, a pass every ${INTERVAL}s)"
    on_term 'log "loop stopped (SIGTERM)"; exit 0'
    while true; do
      one_pass || true
      sleep "$INTERVAL" &
      sleeper=$!
      wait "$sleeper" || true
      sleeper=""
    done
    ;;
  exec)
    if ! lock_acquire "$STATE_DIR/$agent.launch.lock"; then
      # not 0: under launchd's KeepAlive{SuccessfulExit:false} an exit 0 would end supervision for good
      say "another start of $agent is in progress (pid $LOCK_OWNER); exiting (75: try again later)"
      exit 75
    fi
    old_rc=1      # 0 runs the agent (or another --exec about to become it), 2 cannot tell: no second copy
    old_pid=$(cat "$PIDF" 2>/dev/null || true)
    case "$old_pid" in
      ''|*[!0-9]*|"$$") ;;     # none, unreadable, or this very process (a recycled pid): not running
      *) old_rc=0; runs "$old_pid" "$AGENT_RE" || old_rc=$? ;;
    esac
    if [ "$old_rc" != 1 ]; then
      lock_release "$STATE_DIR/$agent.launch.lock"
      # not 0: under launchd's KeepAlive{SuccessfulExit:false} an exit 0 would end supervision for good
      if [ "$old_rc" = 2 ]; then
        say "pid $old_pid (in $PIDF) is alive but its command line cannot be read: cannot tell whether it is" \
            "the agent; not starting a second copy; exiting (75: try again later)"
      else
        say "already running (pid $old_pid); exiting (75: try again later)"
      fi
      exit 75
    fi
    : > "$ARGSF"
    for a in ${1+"$@"}; do printf '%s\n' "$a" >> "$ARGSF"; done
    echo "$$" > "$PIDF"          # exec keeps the pid: it becomes the agent's
    lock_release "$STATE_DIR/$agent.launch.lock"
    trap - EXIT TERM INT
    exec "$PY" "$script" ${1+"$@"}
    ;;
esac
