"""Stand-ins for the operations tests: a process that looks like an agent to `ps` (its script has the agent's
file name) without trading, and a sandbox checkout (the start script copied, the rest linked) whose .env and
.venv a test may change without touching the real checkout's."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from procs import alive, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_OF = {"hybrid": "hybrid_crypto_trader.py", "futures": "high_risk_futures_agent.py"}

# ends on SIGTERM like an agent (exit 0), otherwise sleeps; STANDIN_ON_TERM names a file that it then
# overwrites with its parent's pid (another start writing the pid file while a stop waits)
STANDIN = """import os, signal, sys, time
def term(*_):
    if os.environ.get("STANDIN_ON_TERM"):
        open(os.environ["STANDIN_ON_TERM"], "w").write(f"{os.getppid()}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
time.sleep(600)
"""


def standin_script(tmp: Path, agent: str = "hybrid") -> Path:
    d = tmp / "standin"
    d.mkdir(parents=True, exist_ok=True)
    script = d / SCRIPT_OF[agent]
    script.write_text(STANDIN)
    return script


def standin_agent(tmp: Path, agent: str = "hybrid", on_term: Path | None = None) -> subprocess.Popen:
    """A live process whose command line names ``agent``'s script (what the scripts check before they report
    or signal a pid). The caller stops it (:func:`reap`)."""
    env = dict(os.environ, STANDIN_ON_TERM=str(on_term or ""))
    p = subprocess.Popen([sys.executable, str(standin_script(tmp, agent))], start_new_session=True, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: SCRIPT_OF[agent] in " ".join(_cmdline(p.pid)), 30, "the stand-in agent to start")
    return p


def _cmdline(pid: int) -> list[str]:
    import psutil
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def reap(*procs: subprocess.Popen) -> None:
    """Stop processes this test started (by their own pid), whatever state they are in."""
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait(30)


def sandbox(tmp: Path, venv: str = "broken") -> Path:
    """A checkout in ``tmp/repo``: start_trading_system.sh copied (it runs from its own folder), scripts/, tracer/
    and pyproject.toml linked. ``venv``: "broken" (a .venv whose Python is gone) or "real" (this checkout's)."""
    repo = tmp / "repo"
    repo.mkdir(parents=True)
    (repo / "start_trading_system.sh").write_bytes((ROOT / "start_trading_system.sh").read_bytes())
    (repo / "start_trading_system.sh").chmod(0o755)
    for name in ("scripts", "tracer", "pyproject.toml"):
        (repo / name).symlink_to(ROOT / name)
    if venv == "real":
        (repo / ".venv").symlink_to(ROOT / ".venv")
    else:
        (repo / ".venv" / "bin").mkdir(parents=True)
        (repo / ".venv" / "bin" / "python").symlink_to(tmp / "gone" / "python3.11")
    return repo


def gone(p: subprocess.Popen) -> bool:
    return p.poll() is not None or not alive(p.pid)
