#!/usr/bin/env python3
"""Write docs/RELIABILITY.md from the reliability records (issue 10).

Every reliability scenario records one JSON file through the ``reliability`` fixture of
tests/conftest.py into ``state/reliability/`` (or ``$TB_RELIABILITY_DIR``): scenario, test, trials,
checked, ok, figures, recorded_at. This script reads every ``*.json`` there, whatever the scenario,
and writes:

- when it was generated and from which git commit;
- a summary: scenarios passed / failed, and the figures other scenarios record under the shared names
  ``restarts``, ``faults_injected``, ``inputs_fuzzed``, ``duplicates``, ``secrets_found`` (summed) and
  ``memory_growth_pct`` (collected: the worst and each one);
- which scenarios did not run in the last run: with ``--junit FILE`` (the JUnit XML of that pytest run;
  .ci/run writes ``<records dir>/junit.xml``, used by default when present) a record whose test was
  skipped or absent from the run, and every reliability test skipped in it (long variants); without a
  JUnit file, the last run is taken as the records written within ``--run-window-h`` hours (default 2)
  of the newest one. Long variants (``@pytest.mark.long`` tests that take the ``reliability`` fixture,
  found in tests/) that have no record at all are listed too;
- every scenario: name, result (PASSED / FAILED), test, trials, what was checked, when, its figures.

Usage: .venv/bin/python scripts/reliability_report.py [--dir DIR] [--out FILE] [--junit FILE]
       [--tests DIR] [--strict]      (--strict: exit 1 when a scenario FAILED)
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SUMMED = (("restarts", "restarts survived"), ("faults_injected", "faults injected"),
          ("inputs_fuzzed", "inputs fuzzed"), ("duplicates", "duplicates found"),
          ("secrets_found", "secrets found"))
MEMORY = ("memory_growth_pct", "memory growth")


@dataclass
class Record:
    file: str
    scenario: str
    test: str
    trials: Any
    checked: str
    ok: bool
    figures: dict[str, Any]
    recorded_at: datetime | None
    last_run: bool = True
    why_not: str = ""


@dataclass
class Run:
    """What the last pytest run did to each test (from its JUnit XML): nodeid-ish key -> outcome."""
    outcomes: dict[tuple[str, str], str] = field(default_factory=dict)
    skip_reasons: dict[tuple[str, str], str] = field(default_factory=dict)
    source: str = ""


def default_dir() -> Path:
    return Path(os.environ.get("TB_RELIABILITY_DIR") or ROOT / "state" / "reliability")


def _time(v: Any) -> datetime | None:
    try:
        return datetime.strptime(str(v), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        try:
            t = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
            return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
        except ValueError:
            return None


def load_records(d: Path) -> tuple[list[Record], list[str]]:
    """Every ``*.json`` in ``d`` as a Record; files that are not a record are returned as problems."""
    out, bad = [], []
    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or "scenario" not in raw:
                raise ValueError("not a reliability record (no 'scenario')")
            figures = raw.get("figures") or {}
            if not isinstance(figures, dict):
                figures = {"figures": figures}
            out.append(Record(p.name, str(raw["scenario"]), str(raw.get("test", "")), raw.get("trials", ""),
                              str(raw.get("checked", "")), bool(raw.get("ok", False)), figures,
                              _time(raw.get("recorded_at"))))
        except (OSError, ValueError) as e:
            bad.append(f"{p.name}: {type(e).__name__}: {str(e)[:200]}")
    return out, bad


def junit_key(nodeid: str) -> tuple[str, str]:
    """``tests/test_x.py::TestA::test_b[p]`` -> (``tests.test_x.TestA``, ``test_b[p]``), JUnit's naming."""
    parts = nodeid.split("::")
    path = parts[0][:-3] if parts[0].endswith(".py") else parts[0]
    return ".".join([path.replace("/", ".")] + parts[1:-1]), parts[-1]


def load_junit(path: Path) -> Run:
    run = Run(source=str(path))
    for case in ET.parse(path).getroot().iter("testcase"):
        key = (case.get("classname", ""), case.get("name", ""))
        tags = {c.tag for c in case}
        if "skipped" in tags:
            run.outcomes[key] = "skipped"
            sk = case.find("skipped")
            run.skip_reasons[key] = (sk.get("message") or "").strip() if sk is not None else ""
        elif "failure" in tags or "error" in tags:
            run.outcomes[key] = "failed"
        else:
            run.outcomes[key] = "passed"
    return run


def declared_tests(tests_dir: Path) -> list[tuple[str, bool]]:
    """(nodeid prefix, is_long) of every test function that takes the ``reliability`` fixture."""
    out = []
    for p in sorted(tests_dir.glob("test_*.py")) if tests_dir.is_dir() else []:
        try:
            tree = ast.parse(p.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        try:
            rel = p.resolve().relative_to(ROOT).as_posix()
        except ValueError:
            rel = f"{tests_dir.name}/{p.name}"

        def visit(body, prefix):
            for node in body:
                if isinstance(node, ast.ClassDef):
                    visit(node.body, prefix + [node.name])
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                    if "reliability" in [a.arg for a in node.args.args + node.args.kwonlyargs]:
                        is_long = any("mark.long" in ast.unparse(dec) for dec in node.decorator_list)
                        out.append(("::".join([rel] + prefix + [node.name]), is_long))
        visit(tree.body, [])
    return out


def _matches(nodeid: str, prefix: str) -> bool:
    return nodeid == prefix or nodeid.startswith(prefix + "[")


def mark_last_run(records: list[Record], run: Run | None, window: timedelta) -> None:
    if run is not None:
        for r in records:
            outcome = run.outcomes.get(junit_key(r.test)) if r.test else None
            if outcome is None:
                r.last_run, r.why_not = False, "its test was not in the last run"
            elif outcome == "skipped":
                reason = run.skip_reasons.get(junit_key(r.test), "")
                r.last_run, r.why_not = False, "skipped in the last run" + (f" ({reason})" if reason else "")
        return
    times = [r.recorded_at for r in records if r.recorded_at is not None]
    if not times:
        return
    newest = max(times)
    for r in records:
        if r.recorded_at is None:
            r.last_run, r.why_not = False, "no recorded_at"
        elif r.recorded_at < newest - window:
            r.last_run, r.why_not = False, f"recorded more than {window.total_seconds() / 3600:g} h before the newest record"


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)) and math.isfinite(v):
        return v
    if isinstance(v, (list, tuple)):
        xs = [_num(x) for x in v]
        return sum(x for x in xs if x is not None) if any(x is not None for x in xs) else None
    return None


def _fmt_num(x: float) -> str:
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.2f}"


def summary_rows(records: list[Record]) -> list[tuple[str, str, str]]:
    rows = []
    for key, label in SUMMED:
        total, parts = 0.0, []
        for r in records:
            if key in r.figures:
                x = _num(r.figures[key])
                if x is not None:
                    total += x
                    parts.append(f"{r.scenario} ({_fmt_num(x)})")
        rows.append((label, _fmt_num(total) if parts else "-", ", ".join(parts) if parts else "no scenario recorded it"))
    key, label = MEMORY
    mem = [(r.scenario, _num(r.figures[key])) for r in records if key in r.figures]
    mem = [(s, x) for s, x in mem if x is not None]
    if mem:
        worst = max(mem, key=lambda t: t[1])
        rows.append((label, f"max {worst[1]:+.2f}%", ", ".join(f"{s} ({x:+.2f}%)" for s, x in mem)))
    else:
        rows.append((label, "-", "no scenario recorded it"))
    return rows


def _cell(v: Any, limit: int = 300) -> str:
    if isinstance(v, float):
        s = f"{v:.6g}" if math.isfinite(v) else str(v)
    elif isinstance(v, (list, tuple)):
        if len(v) > 12 and all(not isinstance(x, (list, dict)) for x in v):
            s = json.dumps(list(v[:10]), default=str)[:-1] + f", ... ({len(v)} values)]"
        else:
            s = json.dumps(v, default=str)
    elif isinstance(v, dict):
        s = json.dumps(v, default=str, sort_keys=True)
    elif v is None:
        s = "-"
    else:
        s = str(v)
    s = " ".join(s.split())
    if len(s) > limit:
        s = s[:limit - 20] + f" ... ({len(s)} chars)"
    return s.replace("|", "\\|")


def git_sha() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=20).stdout.strip()
        if not sha:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=20).stdout.strip()
        return sha + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def _family(r: Record) -> str:
    return r.scenario.split(":", 1)[0].strip().lower()


def render(records: list[Record], bad: list[str], d: Path, run: Run | None, declared: list[tuple[str, bool]],
           sha: str, now: datetime, window: timedelta) -> str:
    records = sorted(records, key=lambda r: (_family(r), r.scenario))
    passed = sum(r.ok for r in records)
    failed = [r for r in records if not r.ok]
    ran = [r for r in records if r.last_run]
    L: list[str] = []
    L.append("# Reliability report")
    L.append("")
    L.append(f"Generated by `scripts/reliability_report.py` at {now.strftime('%Y-%m-%d %H:%M:%S UTC')} from "
             f"git commit `{sha}`, from {len(records)} record(s) in `{_rel(d)}`. Do not edit by hand: run the "
             f"reliability suite (`./scripts/run_tests.sh --long` or `.ci/run`) and then this script.")
    L.append("")
    if run is not None:
        L.append(f"Last run: the pytest run of `{_rel(Path(run.source))}` ({len(ran)} of the {len(records)} "
                 f"recorded scenarios ran in it).")
    else:
        L.append(f"Last run: no JUnit file; the records written within {window.total_seconds() / 3600:g} h of the "
                 f"newest one ({len(ran)} of {len(records)}).")
    L.append("")
    L.append("## Summary")
    L.append("")
    L.append("| | total | from |")
    L.append("|---|---|---|")
    L.append(f"| scenarios | {len(records)} | {passed} passed, {len(failed)} FAILED"
             f"{', ' + str(len(records) - len(ran)) + ' not in the last run' if len(ran) < len(records) else ''} |")
    for label, total, parts in summary_rows(records):
        L.append(f"| {label} | {total} | {_cell(parts, 2000)} |")
    L.append("")
    if failed:
        L.append("**FAILED:** " + "; ".join(f"{r.scenario}" for r in failed))
        L.append("")
    L.append("| scenario | result | trials | in last run | recorded |")
    L.append("|---|---|---|---|---|")
    for r in records:
        L.append(f"| [{_cell(r.scenario)}](#{_anchor(r.scenario)}) | {'PASSED' if r.ok else '**FAILED**'} | "
                 f"{_cell(r.trials)} | {'yes' if r.last_run else 'no'} | {_when(r)} |")
    L.append("")

    L.append("## Did not run in the last run")
    L.append("")
    missing: list[str] = []
    for r in records:
        if not r.last_run:
            missing.append(f"- {r.scenario} (`{r.test}`): {r.why_not}; the figures below are from {_when(r)}")
    if run is not None:
        recorded_tests = {junit_key(r.test) for r in records}
        for key, outcome in sorted(run.outcomes.items()):
            reason = run.skip_reasons.get(key, "")
            if outcome == "skipped" and key not in recorded_tests and _is_reliability(key, declared, reason):
                missing.append(f"- `{key[0]}::{key[1]}`: skipped ({reason or 'no reason given'}), never recorded")
    for prefix, is_long in declared:
        if not any(_matches(r.test, prefix) for r in records):
            key = junit_key(prefix)
            if run is not None and any(k[0] == key[0] and (k[1] == key[1] or k[1].startswith(key[1] + "["))
                                       for k, o in run.skip_reasons.items()):
                continue                  # already listed as skipped above
            missing.append(f"- `{prefix}`{' (long variant)' if is_long else ''}: no record")
    L.extend(missing or ["Every recorded scenario ran in the last run."])
    L.append("")
    if bad:
        L.append("## Unreadable records")
        L.append("")
        L.extend(f"- {b}" for b in bad)
        L.append("")

    L.append("## Scenarios")
    for r in records:
        L.append("")
        L.append(f"### {r.scenario}")
        L.append("")
        L.append(f"- result: {'PASSED' if r.ok else '**FAILED**'}")
        L.append(f"- test: `{r.test or '?'}`")
        L.append(f"- trials: {_cell(r.trials)}")
        L.append(f"- checked: {_cell(r.checked, 2000)}")
        L.append(f"- recorded: {_when(r)}{'' if r.last_run else ' (not in the last run: ' + r.why_not + ')'}")
        if r.figures:
            L.append("")
            L.append("| figure | value |")
            L.append("|---|---|")
            for k in sorted(r.figures):
                L.append(f"| {_cell(k)} | {_cell(r.figures[k])} |")
    L.append("")
    return "\n".join(L)


def _is_reliability(key: tuple[str, str], declared: list[tuple[str, bool]], reason: str) -> bool:
    if "long variant" in reason:
        return True
    return any(junit_key(p)[0] == key[0] and (key[1] == junit_key(p)[1] or key[1].startswith(junit_key(p)[1] + "["))
               for p, _ in declared)


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, spaces to '-', punctuation other than '-' and '_' dropped."""
    return "".join(ch for ch in title.lower().replace(" ", "-") if ch.isalnum() or ch in "-_")


def _when(r: Record) -> str:
    return r.recorded_at.strftime("%Y-%m-%d %H:%M UTC") if r.recorded_at else "unknown time"


def _rel(p: Path) -> str:
    try:
        return p.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None, help="records folder (default $TB_RELIABILITY_DIR or "
                                                            "state/reliability)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "RELIABILITY.md")
    ap.add_argument("--junit", type=Path, default=None,
                    help="JUnit XML of the last pytest run (default: DIR/junit.xml when it exists)")
    ap.add_argument("--tests", type=Path, default=ROOT / "tests", help="where to look for reliability tests")
    ap.add_argument("--run-window-h", type=float, default=2.0,
                    help="without a JUnit file: the last run = records within this many hours of the newest")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a scenario FAILED")
    a = ap.parse_args(argv)
    d = a.dir or default_dir()
    records, bad = load_records(d)
    junit = a.junit or (d / "junit.xml")
    run = None
    if junit.is_file():
        try:
            run = load_junit(junit)
        except (ET.ParseError, OSError) as e:
            bad.append(f"{junit.name}: {type(e).__name__}: {e} (ignored; last run taken from the record times)")
    elif a.junit is not None:
        print(f"reliability_report: no JUnit file {a.junit}; last run taken from the record times", file=sys.stderr)
    window = timedelta(hours=a.run_window_h)
    mark_last_run(records, run, window)
    text = render(records, bad, d, run, declared_tests(a.tests), git_sha(), datetime.now(timezone.utc), window)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(a.out)
    failed = [r for r in records if not r.ok]
    print(f"{_rel(a.out)}: {len(records)} scenario(s), {len(failed)} failed, "
          f"{sum(not r.last_run for r in records)} not in the last run")
    return 1 if (a.strict and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
