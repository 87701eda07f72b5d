"""Per-run artifacts (``runs/<run_id>.json``, ``bars/<run_id>_<SYMBOL>.csv``) and their optional git
auto-commit.

With ``TB_AUTOCOMMIT_ARTIFACTS`` on, the artifact folder is its own git repository (created on first
use and marked as ours; an existing repository, such as the code checkout, is refused unless adopted
with ``git -C DIR config tracer.artifacts true``, e.g. one made by hand for its remote), and every
``TB_AUTOCOMMIT_EVERY`` cycles the new artifact files (JSON, CSV only) are committed;
with ``TB_AUTOCOMMIT_PUSH`` the commit is pushed to the repository's configured upstream. A git
failure (a busy index, no remote, a rejected push) is logged and retried at the next commit: it never
stops the agent. Artifacts hold decisions and bars only, never a secret.
"""
from __future__ import annotations

import logging
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from tracer.store import iso, to_json
from tracer.logs import kv, private_dir, private_open, private_write_text

_IDENTITY = ["-c", "user.name=tracer-bullet", "-c", "user.email=tracer-bullet@localhost"]


def write_run(artifact_dir: Path, run_id: int, agent: str, now: datetime, decisions: Sequence[tuple[Any, Any]],
              bars: dict, rejected: dict) -> None:
    d = Path(artifact_dir)
    private_dir(d / "runs")          # artifacts hold decisions and bars: user-only like the rest of the state
    private_dir(d / "bars")
    doc = {"run_id": run_id, "agent": agent, "clock": iso(now),
           "decisions": [{"symbol": s.symbol, "action": s.action.value, "decision": dd.decision,
                          "reason": dd.reason, "quality": s.quality, "conviction": s.conviction,
                          "regime": s.regime.label, "inputs": s.inputs} for s, dd in decisions],
           "rejected": rejected}
    private_write_text(d / "runs" / f"{run_id}.json", to_json(doc))
    for sym, frame in bars.items():
        with private_open(d / "bars" / f"{run_id}_{sym.replace('/', '')}.csv", "w") as fh:
            frame.to_csv(fh)


def _git(repo: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *_IDENTITY, "-C", str(repo), *args], capture_output=True, text=True,
                          timeout=timeout)


# Only these are ever staged: decisions and bars (JSON, CSV). A stray .env.bak, a key file or anything else
# dropped into the folder stays out of history.
ARTIFACT_PATTERNS = (":(glob)**/*.json", ":(glob)**/*.csv")
_OWNER_KEY = "tracer.artifacts"          # set in the repository's own config by the init below


def _owned_repo(repo: Path, log: logging.Logger) -> bool:
    """``repo`` is a repository this module created (initialising it when it is no repository yet).

    A folder inside another repository (the code checkout) would otherwise have ``git add`` act on that
    repository: a repository is used only when ``repo`` is its top level and it carries our mark."""
    top = _git(repo, "rev-parse", "--show-toplevel")
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != repo.resolve():
        if (repo / ".git").exists():
            log.warning(kv("artifacts_git_refused", repo=str(repo), reason="unreadable .git"))
            return False
        r = _git(repo, "init", "-q")
        if r.returncode:
            log.warning(kv("artifacts_git_error", step="init", error=r.stderr.strip()[:300]))
            return False
        _git(repo, "config", _OWNER_KEY, "true")
        return True
    if _git(repo, "config", "--local", "--get", _OWNER_KEY).stdout.strip() != "true":
        log.warning(kv("artifacts_git_refused", repo=str(repo),
                       reason="an existing repository not created for artifacts: nothing committed; point "
                              "the artifact/research folder at a folder of its own"))
        return False
    return True


def autocommit(artifact_dir: Path, message: str, push: bool, log: logging.Logger) -> bool:
    """Commit the new artifact files (JSON, CSV) under ``artifact_dir``, its own repository; push when asked.
    Returns True when a commit was made. Never raises; never commits in a repository it did not create."""
    repo = Path(artifact_dir)
    try:
        private_dir(repo)
        if not _owned_repo(repo, log):
            return False
        # ls-files, unlike add, does not fail on a pattern that matches nothing (no CSV yet)
        r = _git(repo, "ls-files", "-z", "--others", "--modified", "--exclude-standard", "--", *ARTIFACT_PATTERNS)
        new = [f for f in r.stdout.split("\0") if f]
        if r.returncode == 0 and new:
            r = _git(repo, "add", "--", *new)
        if r.returncode:
            log.warning(kv("artifacts_git_error", step="add", error=r.stderr.strip()[:300]))
            return False
        if _git(repo, "diff", "--cached", "--quiet").returncode == 0:
            return False                                   # nothing new
        r = _git(repo, "commit", "-q", "-m", message)
        if r.returncode:
            log.warning(kv("artifacts_git_error", step="commit", error=r.stderr.strip()[:300]))
            return False
        log.info(kv("artifacts_committed", repo=str(repo), message=message))
        if push:
            r = _git(repo, "push", "-q")
            if r.returncode:
                log.warning(kv("artifacts_git_error", step="push", error=r.stderr.strip()[:300]))
            else:
                log.info(kv("artifacts_pushed", repo=str(repo)))
        return True
    except (OSError, subprocess.SubprocessError) as e:
        log.warning(kv("artifacts_git_error", step="run", error=f"{type(e).__name__}: {e}"[:300]))
        return False
