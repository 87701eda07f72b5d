"""Small state kept between runs: the sentiment scores already computed (per model and text hash) and each API
key's failure and cool-down state (keyed by a hash of the key, never the key)."""
from __future__ import annotations

import sqlite3
from typing import Iterable, Sequence

from tracer.store.connection import Connection

_CHUNK = 500          # keys per SELECT ... IN (...) (well under SQLite's variable limit)


class CacheTables(Connection):
    """Mixin of :class:`~tracer.store.Store`: ``sentiment_cache`` and ``api_keys``."""

    def sentiment_scores(self, model_id: str, hashes: Sequence[str]) -> dict[str, tuple[float, str]]:
        """{text_hash: (score, label)} for the hashes stored under ``model_id``."""
        found: dict[str, tuple[float, str]] = {}
        for i in range(0, len(hashes), _CHUNK):
            chunk = list(hashes[i:i + _CHUNK])
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(f"SELECT text_hash, score, label FROM sentiment_cache "
                                         f"WHERE model_id=? AND text_hash IN ({marks})", [model_id, *chunk]):
                found[row[0]] = (float(row[1]), str(row[2]))
        return found

    def put_sentiment_scores(self, rows: Iterable[tuple[str, str, float, str, str]]) -> None:
        """(model_id, text_hash, score, label, created_at) rows; a key already stored is kept."""
        self.conn.executemany("INSERT OR IGNORE INTO sentiment_cache(model_id, text_hash, score, label, "
                              "created_at) VALUES (?,?,?,?,?)", list(rows))

    def sentiment_count(self, model_id: str | None = None) -> int:
        if model_id is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM sentiment_cache").fetchone()[0])
        return int(self.conn.execute("SELECT COUNT(*) FROM sentiment_cache WHERE model_id=?",
                                     (model_id,)).fetchone()[0])

    def api_key_states(self, provider: str) -> list[sqlite3.Row]:
        """key_id, failures, cooldown_until, last_status, last_error of ``provider``'s keys."""
        return self.conn.execute("SELECT key_id, failures, cooldown_until, last_status, last_error FROM api_keys "
                                 "WHERE provider = ?", (provider,)).fetchall()

    def save_api_key_state(self, provider: str, key_id: str, failures: int, cooldown_until: str | None,
                           last_status: int | None, last_error: str | None, updated_at: str) -> None:
        self.conn.execute(
            "INSERT INTO api_keys (provider, key_id, failures, cooldown_until, last_status, last_error, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (provider, key_id) DO UPDATE SET "
            "failures = excluded.failures, cooldown_until = excluded.cooldown_until, "
            "last_status = excluded.last_status, last_error = excluded.last_error, "
            "updated_at = excluded.updated_at",
            (provider, key_id, failures, cooldown_until, last_status, last_error, updated_at))
