"""Agent processes: pid files, whether a pid is alive and is that agent, file times."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a live process (a zombie, exited but not reaped, is not alive)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.is_dir() and Path("/proc/self").exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, IndexError):
            return False
    try:   # macOS: no /proc
        out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
        return out.returncode == 0 and not out.stdout.strip().startswith("Z")
    except (OSError, subprocess.SubprocessError):
        return True


AGENT_SCRIPTS = {"hybrid": "hybrid_crypto_trader.py", "futures": "high_risk_futures_agent.py"}


def _cmdline(pid: int) -> str | None:
    """The command line of ``pid`` (None when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        pass
    try:
        out = subprocess.run(["ps", "-ww", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _watchdog_re(agent: str, modes: str) -> str:
    """scripts/watchdog.sh AGENT (or its wrapper watchdog_AGENT.sh) in one of ``modes`` (a regex alternation):
    never a bare "watchdog", which macOS's own watchdogd matches on a recycled pid."""
    a = re.escape(agent)
    return rf"watchdog(\.sh {a}|_{a}\.sh) --({modes})\b"


def runs_what(pid: int | None, pattern: str) -> bool | None:
    """Three-valued, like ``runs`` in scripts/shell_lib.sh: True when ``pid`` is alive and its command line
    matches ``pattern`` (a regex), False when it is gone or runs something else, None when it is alive but its
    command line cannot be read (``ps`` failed or timed out on macOS): "cannot tell"."""
    if not pid_alive(pid):
        return False
    cmd = _cmdline(pid)  # type: ignore[arg-type]
    if cmd is None:
        return None if pid_alive(pid) else False        # it may have exited meanwhile
    return re.search(pattern, cmd) is not None


def runs(pid: int | None, pattern: str) -> bool:
    """``pid`` runs ``pattern`` or cannot be told apart (:func:`runs_what` is not False): right where a wrong
    "yes" only holds back (a lock not taken over, no second copy started), never where it leads to a signal."""
    return runs_what(pid, pattern) is not False


def _agent_re(agent: str) -> str:
    return rf"{re.escape(AGENT_SCRIPTS.get(agent, agent))}|{_watchdog_re(agent, 'exec')}"


def agent_alive(pid: int | None, agent: str) -> bool:
    """``pid`` is alive and runs ``agent`` (or the ``watchdog.sh --exec`` wrapper about to exec it), or cannot be
    told apart (no second copy beside it): a pid recycled by an unrelated process after a reboot or a crash does
    not count. Before a signal, ask :func:`agent_confirmed`."""
    return runs(pid, _agent_re(agent))


def agent_confirmed(pid: int | None, agent: str) -> bool:
    """``pid`` is alive and its command line, read, shows ``agent``: the only pid that may be signalled."""
    return runs_what(pid, _agent_re(agent)) is True


def watchdog_loop_alive(pid: int | None, agent: str) -> bool:
    """``pid`` runs ``agent``'s watchdog loop (``--loop``, or ``--supervise`` under launchd)."""
    return runs(pid, _watchdog_re(agent, "loop|supervise"))


def pid_file(settings: Any, agent: str) -> Path:
    return Path(settings.state_dir) / f"{agent}.pid"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def lock_takers(agent: str) -> str:
    """What may hold ``agent``'s launch lock: scripts/watchdog.sh AGENT (or its watchdog_AGENT.sh wrapper),
    start_trading_system.sh, the health check's heal (``tracer.cli health ... --heal``). Nothing wider: macOS's
    watchdogd, the web cockpit (``tracer.cli web``) or the other agent's watchdog loop on a pid recycled after a
    power loss never takes it, and would hold a stale lock forever. The same as lock_owners in
    scripts/shell_lib.sh."""
    a = re.escape(agent)
    return (rf"watchdog(\.sh {a}|_{a}\.sh)( |$)|start_trading_system\.sh( |$)"
            rf"|(tracer\.cli|bin/tracer) health( .*)? --heal( |$)")


def launch_lock_holder(state_dir: Path | str, agent: str) -> int | None:
    """Take ``TB_STATE_DIR/<agent>.launch.lock`` (the mkdir lock scripts/watchdog.sh and start_trading_system.sh
    hold while they start or stop the agent). Returns None when taken (release with :func:`launch_lock_release`),
    else the holder's pid (0: just created, pid not written yet). A lock whose holder is gone is taken over."""
    d = Path(state_dir) / f"{agent}.launch.lock"
    for _ in range(3):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            owner = read_pid(d / "pid")
            if owner is None:
                fresh = (_mtime(d) or 0) > time.time() - 60
                if fresh:
                    return 0
            elif runs(owner, lock_takers(agent)):          # or cannot tell: never taken over
                return owner
            shutil.rmtree(d, ignore_errors=True)          # stale: its holder is gone
            continue
        from tracer.logs import private_write_text
        private_write_text(d / "pid", f"{os.getpid()}\n")
        return None
    return 0


def launch_lock_release(state_dir: Path | str, agent: str) -> None:
    d = Path(state_dir) / f"{agent}.launch.lock"
    if read_pid(d / "pid") == os.getpid():
        shutil.rmtree(d, ignore_errors=True)
