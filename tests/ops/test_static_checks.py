"""The tools that hold the code's shape, run with the tests so that CI fails on a violation: ruff (pyflakes and a
complexity limit), mypy strict on the pure core, and the import contracts of pyproject.toml (the pure core does
no I/O, brokers and feeds never import the agents, the agent cycle notifies only through the outbox)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / tool
    if not exe.exists():
        pytest.fail(f"{tool} is not installed in {BIN}: run ./scripts/run_tests.sh (it installs the dev extra)")
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    r = run("ruff", "check", "--output-format", "concise", "tracer", "scripts", "bench", "tests")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_mypy_strict_on_the_pure_core():
    r = run("mypy")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_import_contracts_are_kept():
    r = run("lint-imports", "--no-cache")
    assert r.returncode == 0 and "0 broken" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]


def test_the_checks_can_fail(tmp_path):
    """The contracts and ruff are not vacuous: a module of the pure core that imports the DB is caught (in a copy
    of the package, so that the other checks, maybe running at the same time, never see it)."""
    import os
    import shutil
    shutil.copytree(ROOT / "tracer", tmp_path / "tracer", ignore=shutil.ignore_patterns("__pycache__", "bundled"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bad = tmp_path / "tracer" / "risk" / "_shape_probe.py"
    bad.write_text("from tracer.store import Store\n\nx = undefined_name\n")
    r = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert r.returncode != 0 and "tracer.risk._shape_probe -> tracer.store" in r.stdout, r.stdout[-2000:]
    r = run("ruff", "check", "--output-format", "concise", str(bad))
    assert r.returncode != 0 and "F821" in r.stdout
