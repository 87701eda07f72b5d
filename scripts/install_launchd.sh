#!/usr/bin/env bash
# Install (or remove) the launchd jobs of launchd/*.plist: one supervisor per agent (its watchdog loop, kept
# alive by launchd, which keeps the agent alive), the health check (every 900 s) and the weekly optimisation.
#
#   scripts/install_launchd.sh               fill in the paths, write ~/Library/LaunchAgents/<label>.plist, load them
#   scripts/install_launchd.sh --uninstall   unload and remove them
#   --target DIR   write into (or remove from) DIR instead; launchctl is used only for ~/Library/LaunchAgents
#   --dry-run      print what would be written and run; change nothing
#
# Placeholders in the templates: __REPO__ (this checkout), __LOG_DIR__ (TB_LOG_DIR, absolute), __PATH__.
# On Linux use cron instead (README, "Operations").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)

default_target="$HOME/Library/LaunchAgents"
target="$default_target"
dry=0
uninstall=0
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="${2:?--target needs a directory}"; shift ;;
    --dry-run) dry=1 ;;
    --uninstall) uninstall=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "install_launchd.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

use_launchctl=0
if [ "$dry" = 0 ] && [ "$target" = "$default_target" ] && command -v launchctl >/dev/null 2>&1; then
  use_launchctl=1
fi
domain="gui/$(id -u)"

unload() {
  [ "$use_launchctl" = 1 ] || return 0
  launchctl bootout "$domain/$1" 2>/dev/null || launchctl unload "$2" 2>/dev/null || true
}
load() {
  [ "$use_launchctl" = 1 ] || return 0
  launchctl bootstrap "$domain" "$2" 2>/dev/null || launchctl load -w "$2"
  echo "loaded $1"
}

# the log directory from the config (env and .env), made absolute
log_dir=logs
if [ -x .venv/bin/python ]; then
  log_dir=$(.venv/bin/python -c 'from tracer.config import load_settings as l; print(l().log_dir)' 2>/dev/null || echo logs)
fi
case "$log_dir" in /*) ;; *) log_dir="$ROOT/$log_dir" ;; esac
path_env="/usr/local/bin:/opt/homebrew/bin:/usr/bin:/bin:/usr/sbin:/sbin"
for v in "$ROOT" "$log_dir" "$target"; do
  case "$v" in
    *'&'*|*'<'*|*'>'*|*'|'*|*\\*) echo "install_launchd.sh: unsupported character in path $v" >&2; exit 2 ;;
  esac
done

n=0
for tpl in launchd/*.plist; do
  [ -f "$tpl" ] || continue
  label=$(basename "$tpl" .plist)
  dest="$target/$label.plist"
  n=$((n + 1))
  if [ "$uninstall" = 1 ]; then
    if [ "$dry" = 1 ]; then echo "would remove $dest"; continue; fi
    unload "$label" "$dest"
    if [ -f "$dest" ]; then rm -f "$dest"; echo "removed $dest"; else echo "not installed: $dest"; fi
    continue
  fi
  if [ "$dry" = 1 ]; then
    echo "would write $dest (from $tpl; __REPO__=$ROOT, __LOG_DIR__=$log_dir)"
    [ "$target" != "$default_target" ] || echo "would run: launchctl bootstrap $domain $dest"
    continue
  fi
  mkdir -p "$target"
  # logs hold tracebacks and account data: user-only, like everything the agents write
  if [ ! -d "$log_dir" ]; then (umask 077; mkdir -p "$log_dir"); fi
  tmp="$dest.tmp.$$"
  sed -e "s|__REPO__|$ROOT|g" -e "s|__LOG_DIR__|$log_dir|g" -e "s|__PATH__|$path_env|g" "$tpl" > "$tmp"
  if grep -q '__[A-Z_]*__' "$tmp"; then
    rm -f "$tmp"; echo "install_launchd.sh: unfilled placeholder in $tpl" >&2; exit 1
  fi
  unload "$label" "$dest"
  mv "$tmp" "$dest"
  echo "installed $dest"
  load "$label" "$dest"
done
[ "$n" -gt 0 ] || { echo "install_launchd.sh: no launchd/*.plist templates found" >&2; exit 1; }
# jobs of earlier versions: a watchdog pass every 60 s beside the agent job (two supervisors that fought);
# the agent's job now runs its watchdog loop, so they go
for legacy in com.tracerbullet.watchdog.hybrid com.tracerbullet.watchdog.futures; do
  f="$target/$legacy.plist"
  [ -f "$f" ] || continue
  if [ "$dry" = 1 ]; then echo "would remove $f (superseded)"; continue; fi
  unload "$legacy" "$f"
  rm -f "$f"
  echo "removed $f (superseded by the agent's supervising job)"
done
if [ "$uninstall" = 0 ] && [ "$dry" = 0 ] && [ "$use_launchctl" = 0 ]; then
  echo "launchctl not used (target $target, or no launchctl here): the files are written, nothing is loaded"
fi
