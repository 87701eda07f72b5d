"""The trading record: runs and heartbeats, signals and risk events, orders, fills and venue events,
positions, trades and funding, the account, operator controls. SQL in, rows out; no trading logic."""
from __future__ import annotations

import os
import sqlite3
from datetime import datetime
from typing import Any, Sequence

from tracer.models import Fill, Order, OrderState, Position, PositionSide, Signal, Trade
from tracer.store.codec import iso, parse_iso, to_json, utcnow
from tracer.store.connection import Connection


class TradingTables(Connection):
    """Mixin of :class:`~tracer.store.Store`: the trading record."""

    # --- runs and heartbeats -------------------------------------------------------------
    def insert_run(self, agent: str, cycle: int, clock: datetime, started_at: datetime) -> int:
        cur = self.conn.execute(
            "INSERT INTO runs(agent, cycle, clock, started_at) VALUES (?,?,?,?)",
            (agent, cycle, iso(clock), iso(started_at)))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, **cols: Any) -> None:
        cols.setdefault("finished_at", iso(utcnow()))
        sets = ", ".join(f"{k}=?" for k in cols)
        self.conn.execute(f"UPDATE runs SET {sets} WHERE id=?", (*cols.values(), run_id))

    def last_run(self, agent: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM runs WHERE agent=? ORDER BY clock DESC LIMIT 1", (agent,)).fetchone()

    def heartbeat(self, agent: str, cycle: int, clock: datetime | None, status: str,
                  detail: dict[str, Any] | None = None) -> None:
        self.conn.execute(
            "INSERT INTO heartbeats(agent, ts, clock, cycle, pid, status, detail_json) VALUES (?,?,?,?,?,?,?) "
            "ON CONFLICT(agent) DO UPDATE SET ts=excluded.ts, clock=excluded.clock, cycle=excluded.cycle, "
            "pid=excluded.pid, status=excluded.status, detail_json=excluded.detail_json",
            (agent, iso(utcnow()), iso(clock), cycle, os.getpid(), status, to_json(detail or {})))

    def run_at(self, agent: str, clock: datetime) -> int | None:
        """The id of ``agent``'s run at ``clock`` (a research pass done again replaces its signal)."""
        row = self.conn.execute("SELECT id FROM runs WHERE agent=? AND clock=?", (agent, iso(clock))).fetchone()
        return None if row is None else int(row["id"])

    def delete_signals(self, run_id: int) -> None:
        self.conn.execute("DELETE FROM signals WHERE run_id=?", (run_id,))

    def heartbeats(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM heartbeats ORDER BY agent").fetchall()

    def heartbeat_of(self, agent: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM heartbeats WHERE agent=?", (agent,)).fetchone()

    def known_agents(self) -> list[str]:
        """Agents the DB knows (heartbeats or accounts), sorted."""
        return [r[0] for r in self.conn.execute("SELECT agent FROM heartbeats UNION SELECT agent FROM accounts "
                                                "ORDER BY agent")]

    def equity_before(self, agent: str, t: datetime) -> float | None:
        """Equity after ``agent``'s last cycle whose clock is before ``t`` (None before its first)."""
        row = self.conn.execute("SELECT equity FROM runs WHERE agent=? AND clock<? AND equity IS NOT NULL "
                                "ORDER BY clock DESC LIMIT 1", (agent, iso(t))).fetchone()
        return None if row is None else float(row[0])

    # --- signals and risk events ---------------------------------------------------------
    def insert_signal(self, run_id: int, agent: str, sig: Signal, decision: str, decision_reason: str) -> int:
        r = sig.regime
        cur = self.conn.execute(
            """INSERT INTO signals(run_id, agent, symbol, ts, price, action, direction, reason, decision,
               decision_reason, quality, conviction, regime, regime_confidence, trend_score, volatility,
               annual_vol, volume_regime, price_score, narrative, divergence, divergence_trigger, volume_z,
               rsi, atr, size_fraction, headline_count, scorer_id, gates_json, inputs_json)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            (run_id, agent, sig.symbol, iso(sig.ts), sig.price, sig.action.value, sig.direction, sig.reason,
             decision, decision_reason, sig.quality, sig.conviction, r.label, r.confidence, r.trend_score,
             r.volatility, r.annual_vol, r.volume, sig.price_score, sig.narrative, sig.divergence,
             sig.divergence_trigger, sig.volume_z, sig.rsi, sig.atr, sig.size_fraction, sig.headline_count,
             sig.scorer_id, to_json(sig.gates), to_json(sig.inputs)))
        return int(cur.lastrowid)

    def last_evaluated_by_symbol(self, agent: str) -> dict[str, datetime]:
        """symbol -> the clock of its last signal that was evaluated (not skipped for bad or missing data)."""
        rows = self.conn.execute("SELECT symbol, MAX(ts) AS ts FROM signals WHERE agent=? AND decision != 'skipped' "
                                 "GROUP BY symbol", (agent,)).fetchall()
        return {r["symbol"]: parse_iso(r["ts"]) for r in rows}

    def insert_skip(self, run_id: int, agent: str, symbol: str, ts: datetime, reason: str) -> int:
        """A symbol that could not be evaluated (bad or missing data): recorded, never traded."""
        cur = self.conn.execute(
            "INSERT INTO signals(run_id, agent, symbol, ts, action, reason, decision, decision_reason) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (run_id, agent, symbol, iso(ts), "hold", reason, "skipped", reason))
        return int(cur.lastrowid)

    def insert_risk_event(self, run_id: int | None, agent: str, ts: datetime, symbol: str | None, rule: str,
                          detail: dict[str, Any], signal_id: int | None = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO risk_events(run_id, agent, ts, symbol, rule, detail_json, signal_id) VALUES (?,?,?,?,?,?,?)",
            (run_id, agent, iso(ts), symbol, rule, to_json(detail), signal_id))
        return int(cur.lastrowid)

    def risk_event_exists(self, agent: str, rule: str, since: datetime) -> bool:
        return self.conn.execute("SELECT 1 FROM risk_events WHERE agent=? AND rule=? AND ts>=? LIMIT 1",
                                 (agent, rule, iso(since))).fetchone() is not None

    # --- orders and fills ----------------------------------------------------------------
    def insert_order(self, order: Order, *, run_id: int | None, signal_id: int | None, price_est: float | None,
                     bracket: dict[str, Any] | None = None, sizing: dict[str, Any] | None = None) -> int | None:
        """Insert an order in state ``new``. Returns None (and writes nothing) when the
        client order id already exists: the same decision can never become two orders."""
        now = iso(order.created_at or utcnow())
        cur = self.conn.execute(
            """INSERT INTO orders(client_order_id, agent, symbol, side, type, qty, price_est, notional_est, leverage,
               reduce_only, purpose, reason, signal_id, run_id, state, bracket_json, sizing_json, created_at,
               updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(client_order_id) DO NOTHING""",
            (order.client_order_id, order.agent, order.symbol, order.side.value, order.type.value, order.qty,
             price_est, None if price_est is None else price_est * order.qty, order.leverage,
             int(order.reduce_only), order.purpose, order.reason, signal_id, run_id, OrderState.NEW.value,
             None if bracket is None else to_json(bracket), None if sizing is None else to_json(sizing), now, now))
        return int(cur.lastrowid) if cur.rowcount else None

    def set_order_state(self, client_order_id: str, state: OrderState, reason: str | None = None,
                        filled_qty: float | None = None, avg_price: float | None = None,
                        at: datetime | None = None) -> None:
        self.conn.execute(
            "UPDATE orders SET state=?, state_reason=COALESCE(?, state_reason), "
            "filled_qty=COALESCE(?, filled_qty), avg_price=COALESCE(?, avg_price), updated_at=? "
            "WHERE client_order_id=?",
            (state.value, reason, filled_qty, avg_price, iso(at or utcnow()), client_order_id))

    def order(self, client_order_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM orders WHERE client_order_id=?", (client_order_id,)).fetchone()

    def orders_in_state(self, agent: str, *states: OrderState) -> list[sqlite3.Row]:
        q = ",".join("?" * len(states))
        return self.conn.execute(f"SELECT * FROM orders WHERE agent=? AND state IN ({q}) ORDER BY id",
                                 (agent, *[s.value for s in states])).fetchall()

    def order_reasons_containing(self, agent: str, symbol: str, mark: str) -> list[str]:
        """The state reasons of ``agent``'s ``symbol`` orders that contain ``mark`` (any position's)."""
        return [r[0] for r in self.conn.execute(
            "SELECT state_reason FROM orders WHERE agent=? AND symbol=? AND instr(state_reason, ?) > 0 ORDER BY id",
            (agent, symbol, mark))]

    def insert_venue_event(self, agent: str, venue: str, kind: str, *, symbol: str | None = None,
                           client_order_id: str | None = None, detail: dict[str, Any] | None = None,
                           ts: datetime | None = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO venue_events (agent, venue, ts, kind, symbol, client_order_id, detail_json) "
            "VALUES (?,?,?,?,?,?,?)",
            (agent, venue, iso(ts or utcnow()), kind, symbol, client_order_id, to_json(detail or {})))
        return int(cur.lastrowid)

    def venue_events(self, agent: str | None = None, kind: str | None = None) -> list[sqlite3.Row]:
        q, args = "SELECT * FROM venue_events WHERE 1=1", []
        if agent:
            q, args = q + " AND agent=?", args + [agent]
        if kind:
            q, args = q + " AND kind=?", args + [kind]
        return self.conn.execute(q + " ORDER BY id", args).fetchall()

    def last_venue_event_at(self, client_order_id: str, kind: str) -> datetime | None:
        """When the latest venue event ``kind`` of an order was recorded (None: never)."""
        row = self.conn.execute("SELECT ts FROM venue_events WHERE client_order_id=? AND kind=? "
                                "ORDER BY id DESC LIMIT 1", (client_order_id, kind)).fetchone()
        return parse_iso(row["ts"]) if row is not None else None

    def set_order_venue(self, client_order_id: str, venue: str | None, venue_order_id: str | None = None) -> None:
        self.conn.execute("UPDATE orders SET venue=?, venue_order_id=COALESCE(?, venue_order_id) "
                          "WHERE client_order_id=?", (venue, venue_order_id, client_order_id))

    def insert_fill(self, fill: Fill, agent: str) -> None:
        row = self.order(fill.client_order_id)
        if row is None:
            raise KeyError(f"fill for unknown order {fill.client_order_id}")
        self.conn.execute(
            "INSERT INTO fills(order_id, client_order_id, agent, symbol, side, qty, price, fee, ts) "
            "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(client_order_id, ts) DO NOTHING",
            (row["id"], fill.client_order_id, agent, fill.symbol, fill.side.value, fill.qty, fill.price, fill.fee,
             iso(fill.ts)))
        self.set_order_state(fill.client_order_id, OrderState.FILLED, filled_qty=fill.qty, avg_price=fill.price,
                             at=fill.ts)

    def entries_since(self, agent: str, since: datetime) -> int:
        """Entry orders created at or after ``since`` that were not rejected (daily trade cap)."""
        return int(self.conn.execute(
            "SELECT COUNT(*) FROM orders WHERE agent=? AND purpose='entry' AND created_at>=? AND state!='rejected'",
            (agent, iso(since))).fetchone()[0])

    # --- positions and trades --------------------------------------------------------------
    def save_positions(self, agent: str, open_positions: Sequence[Position],
                       closed: Sequence[tuple[Position, datetime]] = ()) -> None:
        """Make the DB's open positions equal to ``open_positions`` (upsert); write ``closed``
        positions (as they were at their close, even one opened and closed within a bar) as closed."""
        # closed rows first: a symbol's old position closed and a new one opened (or adopted from the venue)
        # in the same cycle must not meet the one-open-position-per-symbol index half way
        keep = {p.entry_order_id for p in open_positions}
        for p, at in closed:
            if p.entry_order_id not in keep:
                self._upsert_position(p, "closed", at)
        for row in self.conn.execute("SELECT entry_order_id FROM positions WHERE agent=? AND status='open'",
                                     (agent,)).fetchall():
            if row["entry_order_id"] not in keep:
                self.conn.execute("UPDATE positions SET status='closed', closed_at=COALESCE(closed_at, ?) "
                                  "WHERE entry_order_id=?", (iso(utcnow()), row["entry_order_id"]))
        for p in open_positions:
            self._upsert_position(p, "open", None)

    def _upsert_position(self, p: Position, status: str, closed_at: datetime | None) -> None:
        self.conn.execute(
            """INSERT INTO positions(agent, symbol, side, qty, entry_price, opened_at, entry_fee, stop_loss,
               take_profit, trail_pct, best_price, max_hold_s, entry_order_id, signal_id, leverage, margin,
               liquidation_price, funding_paid, entry_atr, status, closed_at, exit_seq, stop_seq)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(entry_order_id) DO UPDATE SET qty=excluded.qty, stop_loss=excluded.stop_loss,
               take_profit=excluded.take_profit, trail_pct=excluded.trail_pct, max_hold_s=excluded.max_hold_s,
               best_price=excluded.best_price, margin=excluded.margin,
               liquidation_price=excluded.liquidation_price, funding_paid=excluded.funding_paid,
               status=excluded.status, closed_at=excluded.closed_at, exit_seq=excluded.exit_seq,
               stop_seq=excluded.stop_seq, entry_fee=excluded.entry_fee, entry_atr=excluded.entry_atr""",
            (p.agent, p.symbol, p.side.value, p.qty, p.entry_price, iso(p.opened_at), p.entry_fee, p.stop_loss,
             p.take_profit, p.trail_pct, p.best_price, p.max_hold_s, p.entry_order_id, p.signal_id, p.leverage,
             p.margin, p.liquidation_price, p.funding_paid, p.entry_atr, status, iso(closed_at), p.exit_seq,
             p.stop_seq))

    def insert_funding(self, agent: str, venue: str, symbol: str, ts: datetime, amount: float, ref: str,
                       entry_order_id: str | None) -> bool:
        """Book one funding payment (what we paid, > 0); False when that payment (venue, ref) is booked already."""
        cur = self.conn.execute(
            "INSERT INTO funding_payments(agent, venue, symbol, ts, amount, venue_ref, entry_order_id, booked_at) "
            "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(agent, venue, venue_ref) DO NOTHING",
            (agent, venue, symbol, iso(ts), float(amount), ref, entry_order_id, iso(utcnow())))
        return cur.rowcount == 1

    def last_close_by_symbol(self, agent: str) -> dict[str, datetime]:
        """Each symbol's latest trade exit time for ``agent`` (the futures cooldown)."""
        rows = self.conn.execute("SELECT symbol, MAX(exit_ts) FROM trades WHERE agent=? GROUP BY symbol", (agent,))
        return {r[0]: parse_iso(r[1]) for r in rows}

    def agent_totals(self, agent: str) -> dict[str, Any]:
        """Orders, fills, closed trades, their realised P&L and winners for ``agent`` (the run summary)."""
        c = self.conn
        tr = c.execute("SELECT COUNT(*), COALESCE(SUM(pnl),0), COALESCE(SUM(pnl>0),0) FROM trades WHERE agent=?",
                       (agent,)).fetchone()
        return {"orders": c.execute("SELECT COUNT(*) FROM orders WHERE agent=?", (agent,)).fetchone()[0],
                "fills": c.execute("SELECT COUNT(*) FROM fills WHERE agent=?", (agent,)).fetchone()[0],
                "closed_trades": tr[0], "pnl": tr[1], "winners": tr[2]}

    def funding_booked(self, agent: str) -> list[sqlite3.Row]:
        """Every funding payment booked for ``agent``: venue, symbol, ts, amount, venue_ref, entry_order_id."""
        return self.conn.execute("SELECT venue, symbol, ts, amount, venue_ref, entry_order_id FROM funding_payments "
                                 "WHERE agent=? ORDER BY ts", (agent,)).fetchall()

    def open_positions(self, agent: str) -> list[Position]:
        rows = self.conn.execute("SELECT * FROM positions WHERE agent=? AND status='open' ORDER BY id",
                                 (agent,)).fetchall()
        return [Position(agent=r["agent"], symbol=r["symbol"], side=PositionSide(r["side"]), qty=r["qty"],
                         entry_price=r["entry_price"], opened_at=parse_iso(r["opened_at"]), entry_fee=r["entry_fee"],
                         stop_loss=r["stop_loss"], take_profit=r["take_profit"], trail_pct=r["trail_pct"],
                         best_price=r["best_price"], max_hold_s=r["max_hold_s"], entry_order_id=r["entry_order_id"],
                         signal_id=r["signal_id"], leverage=r["leverage"], margin=r["margin"],
                         liquidation_price=r["liquidation_price"], funding_paid=r["funding_paid"],
                         entry_atr=r["entry_atr"], exit_seq=r["exit_seq"], stop_seq=r["stop_seq"])
                for r in rows]

    def open_position_count(self, agent: str) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM positions WHERE agent=? AND status='open'",
                                     (agent,)).fetchone()[0])

    def insert_trade(self, t: Trade) -> None:
        self.conn.execute(
            """INSERT INTO trades(agent, symbol, side, qty, entry_ts, entry_price, exit_ts, exit_price, leverage,
               fees, funding, pnl, return_pct, exit_reason, entry_order_id, exit_order_id, signal_id)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(exit_order_id) DO NOTHING""",
            (t.agent, t.symbol, t.side.value, t.qty, iso(t.entry_ts), t.entry_price, iso(t.exit_ts), t.exit_price,
             t.leverage, t.fees, t.funding, t.pnl, t.return_pct, t.exit_reason,
             t.entry_order_id, t.exit_order_id, t.signal_id))

    def add_trade_funding(self, agent: str, entry_order_id: str, amount: float) -> bool:
        """Funding paid (``amount`` > 0) that the venue reported after the trade closing ``entry_order_id`` was
        written: charged to that trade's last part (funding, P&L and return). False when no such trade."""
        r = self.conn.execute("SELECT * FROM trades WHERE agent=? AND entry_order_id=? "
                              "ORDER BY exit_ts DESC, id DESC LIMIT 1", (agent, entry_order_id)).fetchone()
        if r is None:
            return False
        pnl = r["pnl"] - amount
        ret = Trade(agent=agent, symbol=r["symbol"], side=PositionSide(r["side"]), qty=r["qty"],
                    entry_ts=parse_iso(r["entry_ts"]), entry_price=r["entry_price"], exit_ts=parse_iso(r["exit_ts"]),
                    exit_price=r["exit_price"], fees=r["fees"], funding=r["funding"] - amount, pnl=pnl,
                    exit_reason=r["exit_reason"], entry_order_id=entry_order_id, exit_order_id=r["exit_order_id"],
                    leverage=r["leverage"]).return_pct
        self.conn.execute("UPDATE trades SET funding=funding-?, pnl=?, return_pct=? WHERE id=?",
                          (amount, pnl, ret, r["id"]))
        # the closed position's own figure too: one explanation, one funding total
        self.conn.execute("UPDATE positions SET funding_paid=funding_paid+? WHERE agent=? AND entry_order_id=?",
                          (amount, agent, entry_order_id))
        return True

    def trade_stats(self, agent: str, since: datetime | None = None, until: datetime | None = None
                    ) -> tuple[int, float, int]:
        """(closed trades, summed P&L, winning trades) of ``agent`` with since <= exit_ts < until."""
        row = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(pnl),0), COALESCE(SUM(pnl>0),0) FROM trades WHERE agent=? "
            "AND (? IS NULL OR exit_ts>=?) AND (? IS NULL OR exit_ts<?)",
            (agent, iso(since), iso(since), iso(until), iso(until))).fetchone()
        return int(row[0]), float(row[1]), int(row[2])

    def closed_trade_pnls(self, agent: str, limit: int = 500) -> list[float]:
        rows = self.conn.execute("SELECT return_pct FROM trades WHERE agent=? ORDER BY exit_ts DESC, id DESC LIMIT ?",
                                 (agent, limit)).fetchall()
        return [r[0] for r in reversed(rows)]

    # --- account ---------------------------------------------------------------------------
    def account(self, agent: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM accounts WHERE agent=?", (agent,)).fetchone()

    def save_account(self, agent: str, *, initial_capital: float, cash: float, realized_pnl: float,
                     fees_paid: float, day: str | None, day_start_equity: float | None) -> None:
        self.conn.execute(
            """INSERT INTO accounts(agent, initial_capital, cash, realized_pnl, fees_paid, day, day_start_equity,
               updated_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(agent) DO UPDATE SET cash=excluded.cash,
               realized_pnl=excluded.realized_pnl, fees_paid=excluded.fees_paid, day=excluded.day,
               day_start_equity=excluded.day_start_equity, updated_at=excluded.updated_at""",
            (agent, initial_capital, cash, realized_pnl, fees_paid, day, day_start_equity, iso(utcnow())))

    # --- operator controls ----------------------------------------------------------------
    def is_paused(self, agent: str) -> bool:
        row = self.conn.execute("SELECT paused FROM controls WHERE agent=?", (agent,)).fetchone()
        return bool(row and row[0])

    def set_paused(self, agent: str, paused: bool, reason: str = "") -> None:
        """Pause (no new entries; exits still managed) or resume an agent."""
        self.conn.execute(
            "INSERT INTO controls(agent, paused, reason, updated_at) VALUES (?,?,?,?) ON CONFLICT(agent) DO UPDATE "
            "SET paused=excluded.paused, reason=excluded.reason, updated_at=excluded.updated_at",
            (agent, int(paused), reason, iso(utcnow())))
