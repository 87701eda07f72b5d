"""The cockpit's reads and its operator requests (schema v12: ``control_requests``): the order explanation shared by
``tracer explain``, the Telegram answers and the web API; equity series, trades, signals and per-symbol
performance; requests to force-exit or reload that the agent carries out at its next cycle. SQL in, rows out."""
from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from tracer.store.codec import iso, utcnow
from tracer.store.connection import Connection

_MAX_ROWID = 2**63 - 1                     # SQLite's INTEGER is a signed 64-bit integer


class CockpitTables(Connection):
    """Mixin of :class:`~tracer.store.Store`: what the cockpit reads, and the operator requests."""

    # --- the explanation of one order or signal (tracer explain, /explain, GET /api/v1/orders/{id}) --------
    def find_order(self, order_id: str) -> sqlite3.Row | None:
        """An order by client order id, else by numeric id (an all-digit id that fits SQLite's signed 64-bit INTEGER:
        a longer one, e.g. an exchange's order id, is no row id, and binding it would raise OverflowError)."""
        row: sqlite3.Row | None = self.conn.execute("SELECT * FROM orders WHERE client_order_id=?",
                                                    (order_id,)).fetchone()
        if row is None and order_id.isascii() and order_id.isdigit() and int(order_id) <= _MAX_ROWID:
            row = self.conn.execute("SELECT * FROM orders WHERE id=?", (int(order_id),)).fetchone()
        return row

    def order_trail(self, order_id: str | None = None, signal_id: int | None = None) -> dict[str, Any] | None:
        """Everything recorded about an order (client or numeric id) or a signal: the signal with its run and risk
        events, the orders, and per order its venue events, fills, position, funding and trades. None: unknown."""
        c = self.conn
        order = None
        if order_id is not None:
            order = self.find_order(order_id)
            if order is None:
                return None
            signal_id = order["signal_id"]
        sig = c.execute("SELECT * FROM signals WHERE id=?", (signal_id,)).fetchone() if signal_id else None
        if order is None and sig is None:
            return None
        run = c.execute("SELECT * FROM runs WHERE id=?", (sig["run_id"],)).fetchone() if sig is not None else None
        risk = c.execute("SELECT * FROM risk_events WHERE signal_id=? ORDER BY id", (sig["id"],)).fetchall() \
            if sig is not None else []
        orders = [order] if order is not None else c.execute("SELECT * FROM orders WHERE signal_id=? ORDER BY id",
                                                             (signal_id,)).fetchall()
        per_order = []
        for o in orders:
            cid = o["client_order_id"]
            fr = c.execute("SELECT COUNT(*) AS n, COALESCE(SUM(amount), 0) AS paid, MIN(ts) AS first, MAX(ts) AS last "
                           "FROM funding_payments WHERE entry_order_id=?", (cid,)).fetchone()
            per_order.append({
                "order": o,
                "venue_events": c.execute("SELECT * FROM venue_events WHERE client_order_id=? ORDER BY id",
                                          (cid,)).fetchall(),
                "fills": c.execute("SELECT * FROM fills WHERE client_order_id=? ORDER BY id", (cid,)).fetchall(),
                "position": c.execute("SELECT * FROM positions WHERE entry_order_id=?", (cid,)).fetchone(),
                "funding": fr,
                # a position closed in parts (a venue's partial exit) has one trade per part
                "trades": c.execute("SELECT * FROM trades WHERE entry_order_id=? OR exit_order_id=? ORDER BY id",
                                    (cid, cid)).fetchall(),
            })
        return {"signal": sig, "run": run, "risk_events": risk, "orders": per_order}

    # --- series and lists -------------------------------------------------------------------------------
    def equity_series(self, agent: str, since: datetime | None = None, limit: int = 5000) -> list[sqlite3.Row]:
        """(clock, equity, cash) of ``agent``'s cycles, oldest first (the latest ``limit``)."""
        rows = self.conn.execute("SELECT clock, equity, cash FROM runs WHERE agent=? AND equity IS NOT NULL "
                                 "AND (? IS NULL OR clock>=?) ORDER BY clock DESC LIMIT ?",
                                 (agent, iso(since), iso(since), limit)).fetchall()
        return list(reversed(rows))

    def trades(self, agent: str | None = None, symbol: str | None = None, since: datetime | None = None,
               limit: int = 100) -> list[sqlite3.Row]:
        """Closed trades, latest exit first."""
        return self.conn.execute(
            "SELECT * FROM trades WHERE (? IS NULL OR agent=?) AND (? IS NULL OR symbol=?) AND (? IS NULL OR exit_ts>=?) "
            "ORDER BY exit_ts DESC, id DESC LIMIT ?",
            (agent, agent, symbol, symbol, iso(since), iso(since), limit)).fetchall()

    def signals_list(self, agent: str | None = None, symbol: str | None = None, since: datetime | None = None,
                     limit: int = 200) -> list[sqlite3.Row]:
        """Recorded signals with their scores, latest first."""
        return self.conn.execute(
            "SELECT id, run_id, agent, symbol, ts, price, action, direction, reason, decision, decision_reason, "
            "quality, conviction, regime, regime_confidence, trend_score, rsi, atr, gates_json FROM signals "
            "WHERE (? IS NULL OR agent=?) AND (? IS NULL OR symbol=?) AND (? IS NULL OR ts>=?) "
            "ORDER BY ts DESC, id DESC LIMIT ?",
            (agent, agent, symbol, symbol, iso(since), iso(since), limit)).fetchall()

    def symbol_orders(self, symbol: str, agent: str | None = None, limit: int = 500) -> list[sqlite3.Row]:
        """Filled orders of ``symbol`` (entries and exits) with their reasons, oldest first."""
        rows = self.conn.execute(
            "SELECT o.id, o.client_order_id, o.agent, o.symbol, o.side, o.purpose, o.reason, o.avg_price, o.filled_qty, "
            "o.updated_at, f.ts AS fill_ts, f.price AS fill_price FROM orders o JOIN fills f ON f.client_order_id="
            "o.client_order_id WHERE o.symbol=? AND (? IS NULL OR o.agent=?) ORDER BY f.ts DESC, o.id DESC LIMIT ?",
            (symbol, agent, agent, limit)).fetchall()
        return list(reversed(rows))

    def performance_by_symbol(self, agent: str | None = None) -> list[sqlite3.Row]:
        """Per agent and symbol: closed trades, winners, summed P&L and mean return, best P&L first."""
        return self.conn.execute(
            "SELECT agent, symbol, COUNT(*) AS trades, SUM(pnl>0) AS wins, SUM(pnl) AS pnl, AVG(return_pct) AS avg_return "
            "FROM trades WHERE (? IS NULL OR agent=?) GROUP BY agent, symbol ORDER BY pnl DESC, agent, symbol",
            (agent, agent)).fetchall()

    def pnl_by_day(self, agent: str, since: datetime | None = None) -> list[sqlite3.Row]:
        """Per UTC day of the exit: closed trades, winners and realised P&L, oldest first."""
        return self.conn.execute(
            "SELECT substr(exit_ts, 1, 10) AS day, COUNT(*) AS trades, SUM(pnl>0) AS wins, SUM(pnl) AS pnl FROM trades "
            "WHERE agent=? AND (? IS NULL OR exit_ts>=?) GROUP BY day ORDER BY day", (agent, iso(since), iso(since))
        ).fetchall()

    def recent_alerts(self, limit: int = 10) -> list[sqlite3.Row]:
        """The latest notifications other than command replies (one per message, whatever its channels: the rows of
        one message share their ``created_at``), each with its channels' delivery (``discord:sent telegram:pending``)."""
        return self.conn.execute(
            "SELECT MAX(id) AS id, created_at, agent, kind, message, "
            "GROUP_CONCAT(channel || ':' || status, ' ') AS delivery FROM notifications WHERE kind!='command_reply' "
            "GROUP BY created_at, agent, kind, message ORDER BY id DESC LIMIT ?", (limit,)).fetchall()

    def universe_runs(self, limit: int = 20) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT id, as_of, params_hash, feed, created_at, assets, artifact FROM universe_runs "
                                 "ORDER BY id DESC LIMIT ?", (limit,)).fetchall()

    def research_calls_of(self, universe_run_id: int) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT c.id, c.symbol, c.timeframe, c.as_of, c.rank, c.action, c.risk_band, c.readiness, c.side, c.price, "
            "c.stop, c.composite, c.quality, c.conviction, o.hit, o.r_multiple FROM research_calls c "
            "LEFT JOIN research_outcomes o ON o.call_id=c.id WHERE c.universe_run_id=? ORDER BY c.rank, c.timeframe",
            (universe_run_id,)).fetchall()

    def eval_runs(self, limit: int = 20) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM eval_runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()

    def control_of(self, agent: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute("SELECT * FROM controls WHERE agent=?", (agent,)).fetchone()
        return row

    # --- operator requests -----------------------------------------------------------------------------
    def request_control(self, agent: str, kind: str, target: str | None, actor: str) -> int:
        """Queue a request (``force_exit`` of a symbol or ``all``; ``reload``) for ``agent``'s next cycle. A pending
        request of the same kind and target is not queued twice: its id is returned."""
        row = self.conn.execute("SELECT id FROM control_requests WHERE agent=? AND kind=? AND target IS ? "
                                "AND status='pending'", (agent, kind, target)).fetchone()
        if row is not None:
            return int(row["id"])
        cur = self.conn.execute("INSERT INTO control_requests(ts, agent, kind, target, actor) VALUES (?,?,?,?,?)",
                                (iso(utcnow()), agent, kind, target, actor))
        return int(cur.lastrowid or 0)

    def pending_requests(self, agent: str, kind: str | None = None) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM control_requests WHERE agent=? AND status='pending' "
                                 "AND (? IS NULL OR kind=?) ORDER BY id", (agent, kind, kind)).fetchall()

    def finish_request(self, request_id: int, status: str, result: str, clock: datetime | None) -> None:
        self.conn.execute("UPDATE control_requests SET status=?, result=?, done_at=?, done_clock=? "
                          "WHERE id=? AND status='pending'", (status, result, iso(utcnow()), iso(clock), request_id))

    def control_requests(self, agent: str | None = None, limit: int = 50) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM control_requests WHERE (? IS NULL OR agent=?) ORDER BY id DESC "
                                 "LIMIT ?", (agent, agent, limit)).fetchall()
