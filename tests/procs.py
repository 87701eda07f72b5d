"""Helpers shared by the tests that run processes and shell scripts for real."""
from __future__ import annotations

import logging
import socket
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil


def alive(pid: int) -> bool:
    """A running process (a zombie that has exited but is not yet reaped does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(cond, timeout: float = 90.0, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return
        except ValueError:       # a pid file read while the script rewrites it (truncated, empty): not yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def committed_cycles(dbfile: Path, timeout: float = 5.0) -> int:
    """The id of the last committed cycle (``runs``) in an agent's DB, read-only; 0 before the DB exists
    or while it cannot be read (another process may be writing it)."""
    if not dbfile.exists():
        return 0
    try:
        c = sqlite3.connect(f"file:{dbfile}?mode=ro", uri=True, timeout=timeout)
        try:
            return int(c.execute("SELECT COALESCE(MAX(id), 0) FROM runs").fetchone()[0])
        finally:
            c.close()
    except sqlite3.Error:
        return 0


@contextmanager
def db(tmp: Path) -> Iterator[sqlite3.Connection]:
    """The test system's DB (``<tmp>/state/t.db``), committed and closed on exit."""
    c = sqlite3.connect(tmp / "state" / "t.db", timeout=30)
    c.row_factory = sqlite3.Row
    try:
        yield c
        c.commit()
    finally:
        c.close()


class ListHandler(logging.Handler):
    """Keeps every log message in ``lines`` (for asserting on an agent's log in process)."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections while the block runs: bound, never listening. A port closed
    after ``bind(0)`` could meanwhile be taken by a fake server of another test worker."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]
