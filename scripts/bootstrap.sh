#!/usr/bin/env bash
# Create .venv when missing and (re)install the project when pyproject.toml changed.
# Usage: scripts/bootstrap.sh [EXTRA]   e.g. scripts/bootstrap.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd -P)
extra="${1:-}"
spec="."
[ -n "$extra" ] && spec=".[$extra]"
stamp=".venv/.installed${extra:+-$extra}"
# A venv whose Python vanished (a Homebrew upgrade removes the interpreter it links to) looks installed but
# cannot run: rebuild it from scratch, or its install stamp would block the reinstall forever.
if [ -e .venv ] || [ -L .venv/bin/python ]; then
  if ! .venv/bin/python -c '' >/dev/null 2>&1; then
    echo "bootstrap: .venv's Python no longer runs (its interpreter was removed or upgraded): rebuilding .venv" >&2
    rm -rf .venv
  elif ! .venv/bin/python -c 'import tracer.cli' >/dev/null 2>&1; then
    echo "bootstrap: .venv cannot import tracer (an incomplete install): reinstalling" >&2
    rm -f .venv/.installed .venv/.installed-*
  elif [ "$(cd / && "$here/.venv/bin/python" -c 'import pathlib, tracer; print(pathlib.Path(tracer.__file__).resolve().parents[1])' 2>/dev/null)" != "$here" ]; then
    # a checkout moved or copied (the README's advice for ~/Documents): the venv's scripts start the old folder's
    # Python and its editable install points at the old folder, so .venv/bin/tracer no longer runs
    echo "bootstrap: .venv belongs to another folder (the checkout was moved or copied): rebuilding .venv" >&2
    rm -rf .venv
  fi
fi
if [ ! -x .venv/bin/python ]; then
  py="${TB_PYTHON:-}"
  if [ -z "$py" ]; then
    # cron's PATH (/usr/bin:/bin) finds only Apple's python3 (3.9): Homebrew's folders are probed too
    for cand in python3.14 python3.13 python3.12 python3.11 \
        /opt/homebrew/bin/python3.14 /opt/homebrew/bin/python3.13 /opt/homebrew/bin/python3.12 \
        /opt/homebrew/bin/python3.11 /opt/homebrew/bin/python3 \
        /usr/local/bin/python3.14 /usr/local/bin/python3.13 /usr/local/bin/python3.12 \
        /usr/local/bin/python3.11 /usr/local/bin/python3 python3; do
      # quiet: a pyenv shim exists for versions pyenv does not have, and says so on stderr when run
      if command -v "$cand" >/dev/null 2>&1 \
          && "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; then
        py="$cand"; break
      fi
    done
  fi
  [ -n "$py" ] || { echo "bootstrap: Python >= 3.11 is required (set TB_PYTHON to its path)" >&2; exit 2; }
  echo "bootstrap: creating .venv with $py" >&2
  "$py" -m venv .venv
fi
fresh() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ]; }
# an install with the dev extra also satisfies the plain one
if ! fresh "$stamp" && ! { [ -z "$extra" ] && fresh .venv/.installed-dev; }; then
  echo "bootstrap: installing $spec into .venv" >&2
  # a newer pip is nice to have, not needed: offline (or behind a proxy) the install goes on with the one there
  .venv/bin/python -m pip install -q --upgrade pip >&2 \
    || echo "bootstrap: could not upgrade pip (offline?); going on with $(.venv/bin/python -m pip --version 2>/dev/null | cut -d' ' -f1-2)" >&2
  .venv/bin/python -m pip install -q -e "$spec" >&2
  touch "$stamp"
fi
