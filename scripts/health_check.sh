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
# Without a usable .venv the one alert (setup) goes out by curl, at most once an hour (alert_setup below); so
# does a crash of the checker (exit > 2, or an uncaught exception), in every mode.
# Alerts (tracer/ops/alerts.py): a failing check alerts at its level (warning/critical, routed by
# TB_ALERT_CHANNELS_<LEVEL>) when it starts failing, changes level, or its repeat window passed; a check that
# turns green again sends an info "recovered". The checks: tracer/ops/ and tracer/ops/checks.py.
# Each run also rotates the operations logs (health.log, watchdog.log, heal.log, alerts.log, start.log, *.err)
# at TB_LOG_MAX_MB into NAME.1 ... NAME.<TB_LOG_BACKUPS> (tracer/ops/logrotate.py).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
json=0
noalert=0
for arg in "$@"; do
  case "$arg" in
    --json) json=1 ;;
    --no-alert) noalert=1 ;;
    --heal|--quiet) ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "health_check.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
PY=.venv/bin/python
# dotenv_value (for the alert without Python); this script reports even without it
# shellcheck source=shell_lib.sh
[ ! -r scripts/shell_lib.sh ] || . scripts/shell_lib.sh

# setting NAME DEFAULT: NAME as the config loader reads it (the environment over .env), without Python;
# fails when .env holds it in a form this cannot read safely
setting() {
  local v rc=0
  if eval "[ -n \"\${$1+set}\" ]"; then eval "v=\${$1}"; printf '%s\n' "$v"; return 0; fi
  v=$(dotenv_value "$1") || rc=$?
  case "$rc" in 0) printf '%s\n' "${v%"${v##*[![:space:]]}"}" ;; 1) printf '%s\n' "$2" ;; *) return 1 ;; esac
}
# alert_curl MARKER TEXT: TEXT (critical) to Discord and Telegram by curl, since the alert code needs the very
# Python that is gone (a Homebrew upgrade) or crashed, and stdout goes to a log nobody reads. Only the channels
# TB_ALERT_CHANNELS_CRITICAL routes (default: all). At most once an hour per MARKER (a file in the state folder:
# TB_STATE_DIR, or the default state/ of this checkout when .env holds it in a form this cannot read, e.g.
# ${HOME}/...): cron or launchd runs this every 15 minutes, and the fix needs a person. The secrets come from
# the environment or .env (never printed, never logged) and go to curl on its stdin (-K -), not its command
# line, which every user of the machine can list.
alert_curl() {
  local state marker url token chat base chans text="$2" sent=0
  [ "$noalert" = 0 ] && command -v curl >/dev/null 2>&1 && command -v dotenv_value >/dev/null 2>&1 || return 0
  state=$(setting TB_STATE_DIR state) || state=state
  case "$state" in \~) state=$HOME ;; \~/*) state="$HOME/${state#\~/}" ;; esac
  [ -n "$state" ] || state=state
  marker="$state/$1"
  if [ -n "$(find "$marker" -mmin -60 2>/dev/null)" ]; then return 0; fi
  chans=$(setting TB_ALERT_CHANNELS_CRITICAL "console,discord,telegram") || chans="console,discord,telegram"
  chans=$(printf '%s' "$chans" | tr '[:upper:]' '[:lower:]' | tr -d '[:space:]')
  url=$(setting TB_DISCORD_WEBHOOK_URL "") || url=""
  case ",$chans," in *,discord,*) ;; *) url="" ;; esac
  case "$url" in
    http://*|https://*)
      case "$url" in *[[:space:]\"\\]*) ;; *)
        printf 'url = "%s"\n' "$url" | curl -fsS --max-time 15 -o /dev/null -K - -H 'Content-Type: application/json' \
          --data-binary "{\"content\": \"$text\"}" 2>/dev/null && sent=1 ;;
      esac ;;
  esac
  token=$(setting TB_TELEGRAM_BOT_TOKEN "") || token=""
  chat=$(setting TB_TELEGRAM_CHAT_ID "") || chat=""
  base=$(setting TB_TELEGRAM_BASE_URL "https://api.telegram.org/bot") || base=""
  case ",$chans," in *,telegram,*) ;; *) token="" ;; esac
  if [ -n "$token" ] && [ -n "$chat" ] && [ -n "$base" ]; then
    case "$base$token" in *[[:space:]\"\\]*) ;; *)
      printf 'url = "%s%s/sendMessage"\n' "$base" "$token" | curl -fsS --max-time 15 -o /dev/null -K - \
        --data-urlencode "chat_id=$chat" --data-urlencode "text=$text" 2>/dev/null && sent=1 ;;
    esac
  fi
  if [ "$sent" = 1 ]; then (umask 077; mkdir -p "$state" 2>/dev/null && : > "$marker") 2>/dev/null; fi
  return 0
}
host() { hostname 2>/dev/null | tr -cd 'A-Za-z0-9.-'; }
# alert_setup MESSAGE: the setup finding, when Python cannot run the checks at all. Only the fixed texts of this
# script (no quote, no backslash) and a sanitised host name go into the JSON.
alert_setup() {
  alert_curl setup_alert.sent "🚨 health critical on $(host): setup: $1 (no other check ran; sent by scripts/health_check.sh without Python, at most once an hour)"
}
# report_setup MESSAGE: the one critical finding when Python cannot run the checks at all
report_setup() {
  alert_setup "$1"
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
out=$("$PY" -m tracer.cli health ${1+"$@"}) || rc=$?
crashed=0
if [ "$rc" -gt 2 ] || { [ "$rc" = 1 ] && [ -z "$out" ]; }; then crashed=1; fi
# the report (a crash's partial output too, except in --json, whose one document follows below)
# `health_check.sh | head`: a reader that left is no crash of this script (SIGPIPE ignored, the write error dropped)
trap '' PIPE
if [ -n "$out" ] && { [ "$crashed" = 0 ] || [ "$json" = 0 ]; }; then printf '%s\n' "$out" 2>/dev/null; fi
# a crash of the checker: exit > 2 (tracer's health exits 3 on a bug in a check), or an uncaught exception
# before it (Python exits 1 then, with no report; a real warning always prints its report). It counts as
# critical, is alerted (by curl: the Python alert code may be what crashed; at most once an hour) whatever the
# mode, and the JSON contract still holds.
if [ "$crashed" = 1 ]; then
  msg="the health checker crashed (exit $rc): no check result this run; see its error output (stderr)"
  alert_curl health_crash_alert.sent "🚨 health critical on $(host): $msg (sent by scripts/health_check.sh, at most once an hour)"
  if [ "$json" = 1 ]; then
    printf '{"status": "critical", "exit_code": 2, "time": "%s", "checks": [{"name": "checker", "level": 2, "message": "%s", "status": "critical"}]}\n' \
      "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$msg"
  else
    printf 'CRITICAL checker            %s\nhealth: critical (0 warning, 1 critical)\n' "$msg"
  fi
  rc=2
fi
exit "$rc"
