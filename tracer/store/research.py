"""The research tables (schema v7: universe_runs, research_calls, eval_runs, research_outcomes; v11: the naive
baseline's outcome). Thin: rows in, rows out; the caller holds the transaction."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tracer.store.codec import iso, to_json, utcnow
from tracer.store.connection import Connection


class ResearchTables(Connection):
    """Mixin of :class:`~tracer.store.Store`: universe scans, their calls and the calls' outcomes."""

    def save_universe_run(self, doc: dict, artifact: str | None) -> tuple[int, bool]:
        """Insert a scan and its calls (one per asset and timeframe). The same ``as_of`` and
        ``params_hash`` again is the same scan: the first one is kept. Returns (id, created)."""
        c = self.conn
        row = c.execute("SELECT id FROM universe_runs WHERE as_of=? AND params_hash=?",
                        (doc["as_of"], doc["params_hash"])).fetchone()
        if row is not None:
            return int(row["id"]), False
        cur = c.execute("INSERT INTO universe_runs(as_of, params_hash, feed, created_at, assets, artifact, doc_json) "
                        "VALUES (?,?,?,?,?,?,?)", (doc["as_of"], doc["params_hash"], doc["feed"], iso(utcnow()),
                                                   len(doc["assets"]), artifact, to_json(doc)))
        rid = int(cur.lastrowid)
        for a in doc["assets"]:
            th = a["thesis"]
            for tf, t in a["timeframes"].items():
                p, s = t["plan"], t["scores"]
                c.execute("""INSERT INTO research_calls(universe_run_id, symbol, timeframe, as_of, rank, action, risk_band,
                             readiness, side, price, atr, entry_low, entry_high, stop, risk, targets_json, horizon_end,
                             composite, quality, conviction, evidence) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                          (rid, a["symbol"], tf, doc["as_of"], a["rank"], th["action"], th["risk_band"], th["readiness"],
                           p["side"], p["price"], p["atr"], p["entry_zone"][0], p["entry_zone"][1], p["stop"], p["risk"],
                           json.dumps(p["targets"]), iso(p["horizon_end"]) if isinstance(p["horizon_end"], datetime)
                           else p["horizon_end"], s["composite"], s["quality"], s["conviction"], a["evidence"]))
        return rid, True


    def latest_universe_doc(self, run_id: int | None = None) -> tuple[int, dict] | None:
        q = ("SELECT id, doc_json FROM universe_runs WHERE id=?", (run_id,)) if run_id is not None else \
            ("SELECT id, doc_json FROM universe_runs ORDER BY id DESC LIMIT 1", ())
        row = self.conn.execute(*q).fetchone()
        return None if row is None else (int(row["id"]), json.loads(row["doc_json"]))


    def open_calls(self) -> list[Any]:
        """Calls without an outcome yet, oldest first."""
        return self.conn.execute("SELECT c.* FROM research_calls c LEFT JOIN research_outcomes o ON o.call_id=c.id "
                                  "WHERE o.call_id IS NULL ORDER BY c.as_of, c.id").fetchall()


    def evaluated_rows(self) -> list[dict]:
        rows = self.conn.execute("SELECT c.id, c.symbol, c.timeframe, c.as_of, c.action, c.risk_band, c.readiness, "
                                  "o.hit, o.r_multiple, o.return_pct, o.first_touch, o.baseline_side, o.baseline_hit, "
                                  "o.baseline_r FROM research_calls c "
                                  "JOIN research_outcomes o ON o.call_id=c.id ORDER BY c.id").fetchall()
        return [dict(r) for r in rows]


    def count_calls(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM research_calls").fetchone()[0])


    def insert_eval_run(self, as_of: datetime, calls: int, evaluated: int, pending: int, no_data: int,
                        summary: dict) -> int:
        cur = self.conn.execute("INSERT INTO eval_runs(created_at, as_of, calls, evaluated, pending, no_data, "
                                 "summary_json) VALUES (?,?,?,?,?,?,?)",
                                 (iso(utcnow()), iso(as_of), calls, evaluated, pending, no_data, to_json(summary)))
        return int(cur.lastrowid)


    def set_eval_artifact(self, eval_id: int, path: str) -> None:
        self.conn.execute("UPDATE eval_runs SET artifact=? WHERE id=?", (path, eval_id))


    def insert_outcome(self, call_id: int, eval_id: int, o: Any, baseline_side: int | None = None,
                       baseline: Any = None) -> None:
        """One call's outcome, with the naive baseline's call on the same bars (None when it has none)."""
        self.conn.execute("INSERT INTO research_outcomes(call_id, eval_run_id, exit_ts, exit_price, move, return_pct, "
                           "r_multiple, hit, first_touch, mfe_r, mae_r, baseline_side, baseline_hit, baseline_r) "
                           "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           (call_id, eval_id, iso(o.exit_ts), o.exit_price, o.move, o.return_pct, o.r_multiple,
                            int(o.hit), o.first_touch, o.mfe_r, o.mae_r, baseline_side,
                            None if baseline is None else int(baseline.hit),
                            None if baseline is None else baseline.r_multiple))

    def update_eval_run(self, eval_id: int, calls: int, evaluated: int, pending: int, no_data: int,
                        summary: dict) -> None:
        self.conn.execute("UPDATE eval_runs SET calls=?, evaluated=?, pending=?, no_data=?, summary_json=? "
                          "WHERE id=?", (calls, evaluated, pending, no_data, to_json(summary), eval_id))
