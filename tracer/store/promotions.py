"""Parameter promotions (``tracer params promote / rollback / auto``): every change of an agent's
parameters, what it replaced and whether it was rolled back."""
from __future__ import annotations

import sqlite3
from typing import Any

from tracer.store.codec import iso, to_json, utcnow
from tracer.store.connection import Connection


class Promotions(Connection):
    """Mixin of :class:`~tracer.store.Store`: parameter promotions."""

    # --- parameter promotions (tracer/optimize/params.py) ----------------------------------
    def insert_promotion(self, agent: str, action: str, params: dict[str, Any], previous: dict[str, Any],
                         proposal: dict[str, Any] | None, code_version: str | None, actor: str,
                         reason: str = "") -> int:
        cur = self.conn.execute(
            "INSERT INTO param_promotions(ts, agent, action, params_json, previous_json, proposal_json, "
            "code_version, actor, reason) VALUES (?,?,?,?,?,?,?,?,?)",
            (iso(utcnow()), agent, action, to_json(params), to_json(previous), to_json(proposal or {}),
             code_version, actor, reason))
        return int(cur.lastrowid)

    def promotions(self, agent: str | None = None) -> list[sqlite3.Row]:
        """Every promotion and rollback, oldest first."""
        return self.conn.execute("SELECT * FROM param_promotions WHERE (? IS NULL OR agent=?) ORDER BY id",
                                 (agent, agent)).fetchall()

    def last_live_promotion(self, agent: str) -> sqlite3.Row | None:
        """The latest promotion of ``agent`` that has not been rolled back (what a rollback undoes)."""
        return self.conn.execute("SELECT * FROM param_promotions WHERE agent=? AND action IN ('promote','auto') "
                                 "AND rolled_back=0 ORDER BY id DESC LIMIT 1", (agent,)).fetchone()

    def mark_rolled_back(self, promotion_id: int) -> None:
        self.conn.execute("UPDATE param_promotions SET rolled_back=1 WHERE id=?", (promotion_id,))
