"""SQLite connection: one file, one schema, WAL, foreign keys, versioned migrations.

Every trading decision is written here with its inputs, scores and reason, so that
any order can be explained afterwards (``tracer explain``). Writes of one agent cycle
happen in one transaction (:meth:`Store.transaction`): a crash mid-cycle leaves no
half-written cycle, and the restarted agent redoes that cycle from the same clock.

Times are stored as ISO 8601 UTC text (``2022-01-10T05:00:00Z``).
"""
from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tracer.store.schema import MIGRATIONS, SCHEMA_VERSION, _statements


class Connection:
    """The connection to the project's single SQLite file: WAL, foreign keys, a busy timeout, migrations,
    one transaction per cycle (nested calls join it), healing after a storage fault."""
    conn: sqlite3.Connection
    # False: the connection may be closed or used by another thread than the one that opened it, one at a time
    # (a web request's connection: its dependency opens and closes it in the server's worker threads)
    same_thread: bool = True

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.busy_timeout_s = float(busy_timeout_s)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        self._connect()
        if new:
            os.chmod(self.path, 0o600)
        self.migrate()

    def _connect(self) -> None:
        """Open the connection. A write that waits longer than ``busy_timeout_s`` for another process's
        lock fails with ``database is locked`` (a storage fault for the agent loop)."""
        self.conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=self.busy_timeout_s,
                                    check_same_thread=self.same_thread)
        self.conn.row_factory = sqlite3.Row
        self._depth = 0
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")

    def reopen(self) -> None:
        """Close and open the connection again (after a storage fault: a file that was read-only, a disk
        that was full or a lock that was held may be fine now, and a connection that saw an I/O error
        must not be trusted). Raises the storage error when the DB still cannot be opened."""
        try:
            self.conn.close()
        except sqlite3.Error:
            pass
        self._heal_side_files()
        self._connect()
        self.migrate()

    def _heal_side_files(self) -> None:
        """SQLite creates ``-wal`` and ``-shm`` with the DB file's mode: after a read-only episode (the DB
        file chmod 0444) they stay read-only when the DB file is writable again, and every write keeps
        failing. Give them the DB file's mode back (we own them: the same process user created them)."""
        try:
            if not os.access(self.path, os.W_OK):
                return
            mode = os.stat(self.path).st_mode & 0o777
            for suffix in ("-wal", "-shm"):
                side = Path(str(self.path) + suffix)
                if side.exists() and not os.access(side, os.W_OK):
                    os.chmod(side, mode)
        except OSError:
            pass

    def probe_write(self) -> None:
        """Raise the storage error unless the DB takes a real, committed write now (the header's
        ``user_version`` set to its own value: a page in the WAL, nothing else changed)."""
        with self.transaction():
            self.conn.execute(f"PRAGMA user_version={self.version()}")

    # --- schema ----------------------------------------------------------------------------
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        current = self.version()
        if current > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: schema version {current} is newer than this code "
                               f"({SCHEMA_VERSION}); upgrade Tracer Bullet")
        for v in range(current, SCHEMA_VERSION):
            with self.transaction():
                if self.version() > v:      # another connection migrated meanwhile (we hold the lock now)
                    continue
                for stmt in _statements(MIGRATIONS[v]):
                    self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version={v + 1}")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolls back on any exception. Nested calls join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self._depth = 0
            self._rollback()
            raise
        else:
            self._depth = 0
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error:
                # a COMMIT that fails (disk full, I/O error, busy) may leave the transaction open
                self._rollback()
                raise

    def _rollback(self) -> None:
        """Roll back if a transaction is still open. SQLite may already have rolled back by itself (disk
        full, I/O error), and a failing ROLLBACK must not hide the error that caused it."""
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
