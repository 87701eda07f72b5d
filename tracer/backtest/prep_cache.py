"""A disk cache of what a backtest prepares from its files: the cleaned candles, the feature tables and the
narratives of every bar (:class:`tracer.backtest.history.History`).

Each is a pure function of file contents, a few settings and the code that computes it, so a repeated
``tracer backtest`` over the same files need not parse, compute and score them again (as the headline
score file spares it the model). An entry's key holds everything it depends on: the sha256 of each input
file's bytes, the settings it reads, the scorer's id and code (narratives), and a fingerprint of the
package's source and of the numpy and pandas versions, so that any change to a file, a setting or the code
misses the cache. Entries are ``.npy`` matrices or uncompressed ``.npz`` files, read without pickle; one
that cannot be read, or whose stored key differs, is a miss. Writes are atomic (a temporary file renamed), and only the newest
:data:`MAX_ENTRIES` entries are kept. A failure to write is ignored: the cache only ever saves time.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

PREP_CACHE_DIR = "prep_cache"       # under TB_STATE_DIR
MAX_ENTRIES = 96                    # a symbol's candles, features and narratives for a few settings each
_KEY = "__key__"


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 (first 16 hex) of every source file of the package and of the numpy and pandas versions."""
    import pandas as pd

    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(f"numpy {np.__version__} pandas {pd.__version__}\0".encode())
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes ("missing" when there is no such file)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return "missing"


class PrepCache:
    """Arrays by key in one folder (see the module's docstring)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.directory / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()}{suffix}"

    @staticmethod
    def key(*parts: Any) -> str:
        """The key of an entry: ``repr`` of its parts (str, int, float, tuples of them) and the code's
        fingerprint."""
        return repr((code_fingerprint(), *parts))

    def load(self, kind: str, key: str) -> dict[str, np.ndarray] | None:
        """Named arrays (an ``.npz`` holding its key)."""
        try:
            with np.load(self._path(kind, key, ".npz"), allow_pickle=False) as z:
                if _KEY not in z.files or str(z[_KEY]) != key:
                    return None
                return {name: z[name] for name in z.files if name != _KEY}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):   # missing, truncated, not an npz
            return None

    def save(self, kind: str, key: str, arrays: dict[str, np.ndarray]) -> None:
        self._write(self._path(kind, key, ".npz"), lambda f: np.savez(f, **arrays, **{_KEY: np.array(key)}))

    def load_table(self, kind: str, key: str) -> np.ndarray | None:
        """One float64 matrix (an ``.npy``, a tenth of an ``.npz``'s reading time; named by the key's whole
        sha256)."""
        try:
            a = np.load(self._path(kind, key, ".npy"), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        return a if a.dtype == np.float64 and a.ndim == 2 else None

    def save_table(self, kind: str, key: str, table: np.ndarray) -> None:
        self._write(self._path(kind, key, ".npy"), lambda f: np.save(f, np.asarray(table, dtype=np.float64)))

    def _write(self, path: Path, write: Any) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    write(f)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            self._prune()
        except OSError:
            return

    def _prune(self) -> None:
        entries = sorted([*self.directory.glob("*.npz"), *self.directory.glob("*.npy")],
                         key=lambda p: p.stat().st_mtime_ns)
        for p in entries[:max(0, len(entries) - MAX_ENTRIES)]:
            try:
                p.unlink()
            except OSError:
                pass
