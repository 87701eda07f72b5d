#!/usr/bin/env bash
# Sourced (not run) by start_trading_system.sh, scripts/watchdog.sh and scripts/health_check.sh, from the
# checkout's root: which program a pid runs (Python's side: tracer/ops/processes.py runs, LOCK_TAKERS), and a
# .env value read without Python.

# dotenv_value NAME: NAME's last assignment in .env, read without Python (plain or quoted, "export ", a
# trailing comment). Exit 1: .env does not set it; 2: it cannot be read safely here ($-expansion, escapes, an
# unreadable .env), and a guess could point --stop at the wrong folder.
dotenv_value() {
  local line v
  [ -e .env ] || return 1
  [ -r .env ] || return 2
  # without the UTF-8 BOM some editors write (python-dotenv skips it) line 1 matches no ^NAME=; bytes, as in the
  # C locale (an octal printf and a plain sed pattern, for BSD sed), so a non-UTF-8 byte upsets neither sed nor grep
  line=$(LC_ALL=C sed "1s/^$(printf '\357\273\277')//" .env |
         LC_ALL=C grep -E "^[[:space:]]*(export[[:space:]]+)?$1[[:space:]]*=" | tail -n 1) || true
  [ -n "$line" ] || return 1
  v=${line#*=}
  v=${v%$'\r'}
  v=${v#"${v%%[![:space:]]*}"}
  case "$v" in
    \"*) v=${v#\"}
         case "$v" in *\"*) v=${v%%\"*} ;; *) return 2 ;; esac
         case "$v" in *'$'*|*\\*) return 2 ;; esac ;;
    \'*) v=${v#\'}
         case "$v" in *\'*) v=${v%%\'*} ;; *) return 2 ;; esac ;;
    *)   v=${v%%[[:space:]]#*}
         case "$v" in *'$'*) return 2 ;; esac ;;
  esac
  printf '%s\n' "$v"
}

# lock_owners AGENT: what may hold AGENT's locks ($TB_STATE_DIR/AGENT.launch.lock, watchdog_AGENT.lock; DIR/pid):
# scripts/watchdog.sh AGENT (or its watchdog_AGENT.sh wrapper), start_trading_system.sh, and the health check's
# heal (tracer.cli health ... --heal). Nothing wider: a pid recycled after a power loss by macOS's watchdogd,
# the web cockpit (tracer.cli web) or the other agent's watchdog loop never takes these locks, and would hold a
# stale one for good. Python's side: tracer/ops/processes.py lock_takers.
lock_owners() {
  printf '%s\n' "watchdog([.]sh $1|_$1[.]sh)( |\$)|start_trading_system[.]sh( |\$)|(tracer[.]cli|bin/tracer) health( .*)? --heal( |\$)"
}

# cmdline_of PID: its command line, arguments joined by spaces. /proc where there is one (Linux, BusyBox
# included: BusyBox ps takes neither -p nor -ww), else ps (macOS). Fails when it cannot be read.
cmdline_of() {
  if [ -d /proc/self ]; then
    [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null
  else
    ps -ww -o command= -p "$1" 2>/dev/null
  fi
}

# runs PID REGEX: 0 when PID is alive and its command line matches REGEX (an extended regex), 1 when it is
# gone or runs something else, 2 when it is alive but its command line cannot be read: "cannot tell" is
# neither "gone" (a lock taken over from a live owner) nor "running" (a signal to an unconfirmed process).
runs() {
  local cmd re="$2"
  kill -0 "$1" 2>/dev/null || return 1
  if ! cmd=$(cmdline_of "$1"); then
    kill -0 "$1" 2>/dev/null || return 1      # it exited meanwhile
    return 2
  fi
  [[ "$cmd" =~ $re ]] || return 1
}
