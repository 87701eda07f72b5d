"""SQLite persistence: one file, one schema, WAL, foreign keys, versioned migrations.

Every trading decision is written here with its inputs, scores and reason, so that
any order can be explained afterwards (``tracer explain``). Writes of one agent cycle
happen in one transaction (:meth:`Store.transaction`): a crash mid-cycle leaves no
half-written cycle, and the restarted agent redoes that cycle from the same clock.

Times are stored as ISO 8601 UTC text (``2022-01-10T05:00:00Z``).
"""
from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Iterator, Sequence

from tracer.models import (Fill, Order, OrderState, OrderType, Position, PositionSide, Side, Signal, Trade)

SCHEMA_V1 = """
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    agent         TEXT NOT NULL,
    cycle         INTEGER NOT NULL,
    clock         TEXT NOT NULL,              -- market time of the cycle (replay clock or wall clock)
    started_at    TEXT NOT NULL,              -- wall time
    finished_at   TEXT,
    symbols       INTEGER NOT NULL DEFAULT 0,
    skipped       INTEGER NOT NULL DEFAULT 0,
    orders        INTEGER NOT NULL DEFAULT 0,
    fills         INTEGER NOT NULL DEFAULT 0,
    cash          REAL,
    equity        REAL,
    status        TEXT NOT NULL DEFAULT 'ok',
    note          TEXT,
    UNIQUE (agent, clock)
);
CREATE TABLE signals (
    id                 INTEGER PRIMARY KEY,
    run_id             INTEGER NOT NULL REFERENCES runs(id),
    agent              TEXT NOT NULL,
    symbol             TEXT NOT NULL,
    ts                 TEXT NOT NULL,
    price              REAL,
    action             TEXT NOT NULL,           -- buy / sell / hold (what the evaluation says)
    direction          INTEGER NOT NULL DEFAULT 0,
    reason             TEXT NOT NULL,           -- evaluation reason
    decision           TEXT NOT NULL,           -- enter / exit / blocked / none / skipped / hold_position
    decision_reason    TEXT NOT NULL,
    quality            REAL,
    conviction         REAL,
    regime             TEXT,
    regime_confidence  REAL,
    trend_score        REAL,
    volatility         TEXT,
    annual_vol         REAL,
    volume_regime      TEXT,
    price_score        REAL,
    narrative          REAL,
    divergence         REAL,
    divergence_trigger REAL,
    volume_z           REAL,
    rsi                REAL,
    atr                REAL,
    size_fraction      REAL,
    headline_count     INTEGER,
    scorer_id          TEXT,
    gates_json         TEXT,
    inputs_json        TEXT
);
CREATE INDEX signals_agent_symbol_ts ON signals(agent, symbol, ts);
CREATE TABLE orders (
    id               INTEGER PRIMARY KEY,
    client_order_id  TEXT NOT NULL UNIQUE,
    agent            TEXT NOT NULL,
    symbol           TEXT NOT NULL,
    side             TEXT NOT NULL,
    type             TEXT NOT NULL,
    qty              REAL NOT NULL CHECK (qty > 0),
    price_est        REAL,
    notional_est     REAL,
    leverage         REAL NOT NULL DEFAULT 1,
    reduce_only      INTEGER NOT NULL DEFAULT 0,
    purpose          TEXT NOT NULL,             -- entry / exit
    reason           TEXT NOT NULL DEFAULT '',
    signal_id        INTEGER REFERENCES signals(id),
    run_id           INTEGER REFERENCES runs(id),
    state            TEXT NOT NULL CHECK (state IN
                       ('new','submitted','partially_filled','filled','canceled','rejected')),
    state_reason     TEXT,
    filled_qty       REAL NOT NULL DEFAULT 0,
    avg_price        REAL,
    bracket_json     TEXT,
    sizing_json      TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX orders_agent_state ON orders(agent, state);
CREATE TABLE fills (
    id               INTEGER PRIMARY KEY,
    order_id         INTEGER NOT NULL REFERENCES orders(id),
    client_order_id  TEXT NOT NULL,
    agent            TEXT NOT NULL,
    symbol           TEXT NOT NULL,
    side             TEXT NOT NULL,
    qty              REAL NOT NULL CHECK (qty > 0),
    price            REAL NOT NULL CHECK (price > 0),
    fee              REAL NOT NULL,
    ts               TEXT NOT NULL,
    UNIQUE (client_order_id, ts)
);
CREATE TABLE positions (
    id                 INTEGER PRIMARY KEY,
    agent              TEXT NOT NULL,
    symbol             TEXT NOT NULL,
    side               TEXT NOT NULL CHECK (side IN ('long','short')),
    qty                REAL NOT NULL,
    entry_price        REAL NOT NULL,
    opened_at          TEXT NOT NULL,
    entry_fee          REAL NOT NULL,
    stop_loss          REAL NOT NULL,
    take_profit        REAL NOT NULL,
    trail_pct          REAL NOT NULL,
    best_price         REAL NOT NULL,
    max_hold_s         REAL NOT NULL,
    entry_order_id     TEXT NOT NULL UNIQUE REFERENCES orders(client_order_id),
    signal_id          INTEGER REFERENCES signals(id),
    leverage           REAL NOT NULL DEFAULT 1,
    margin             REAL NOT NULL DEFAULT 0,
    liquidation_price  REAL,
    funding_paid       REAL NOT NULL DEFAULT 0,
    status             TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open','closed')),
    closed_at          TEXT
);
CREATE UNIQUE INDEX positions_one_open ON positions(agent, symbol) WHERE status = 'open';
CREATE TABLE trades (
    id              INTEGER PRIMARY KEY,
    agent           TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('long','short')),
    qty             REAL NOT NULL,
    entry_ts        TEXT NOT NULL,
    entry_price     REAL NOT NULL,
    exit_ts         TEXT NOT NULL,
    exit_price      REAL NOT NULL,
    leverage        REAL NOT NULL DEFAULT 1,
    fees            REAL NOT NULL,
    funding         REAL NOT NULL DEFAULT 0,
    pnl             REAL NOT NULL,
    return_pct      REAL NOT NULL,
    exit_reason     TEXT NOT NULL,
    entry_order_id  TEXT NOT NULL UNIQUE REFERENCES orders(client_order_id),
    exit_order_id   TEXT NOT NULL UNIQUE,
    signal_id       INTEGER REFERENCES signals(id)
);
CREATE INDEX trades_agent_exit ON trades(agent, exit_ts);
CREATE TABLE risk_events (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER REFERENCES runs(id),
    agent       TEXT NOT NULL,
    ts          TEXT NOT NULL,
    symbol      TEXT,
    rule        TEXT NOT NULL,
    detail_json TEXT NOT NULL,
    signal_id   INTEGER REFERENCES signals(id)
);
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY,
    created_at  TEXT NOT NULL,
    agent       TEXT,
    channel     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','sent','failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    sent_at     TEXT
);
CREATE TABLE heartbeats (
    agent       TEXT PRIMARY KEY,
    ts          TEXT NOT NULL,
    clock       TEXT,
    cycle       INTEGER NOT NULL,
    pid         INTEGER,
    status      TEXT NOT NULL,
    detail_json TEXT
);
CREATE TABLE accounts (
    agent            TEXT PRIMARY KEY,
    initial_capital  REAL NOT NULL,
    cash             REAL NOT NULL,
    realized_pnl     REAL NOT NULL DEFAULT 0,
    fees_paid        REAL NOT NULL DEFAULT 0,
    day              TEXT,
    day_start_equity REAL,
    updated_at       TEXT NOT NULL
);
"""

# v2: the ATR at entry, for the futures agent's volatility stop
SCHEMA_V2 = """
ALTER TABLE positions ADD COLUMN entry_atr REAL NOT NULL DEFAULT 0
"""

# v3: operator controls (pause/resume), the sentiment score cache, API key rotation state
SCHEMA_V3 = """
CREATE TABLE controls (
    agent       TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    reason      TEXT,
    updated_at  TEXT NOT NULL
);
CREATE TABLE sentiment_cache (
    model_id    TEXT NOT NULL,
    text_hash   TEXT NOT NULL,
    score       REAL NOT NULL,
    label       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (model_id, text_hash)
);
CREATE TABLE api_keys (
    provider        TEXT NOT NULL,
    key_id          TEXT NOT NULL,             -- a hash of the key: the key itself is never stored
    failures        INTEGER NOT NULL DEFAULT 0,
    cooldown_until  TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (provider, key_id)
)
"""

# v4: outbox delivery claims (two processes never send one row twice), progress of split messages,
# and small key/value state of the notifiers (the Telegram getUpdates offset)
SCHEMA_V4 = """
ALTER TABLE notifications ADD COLUMN claimed_by TEXT;
ALTER TABLE notifications ADD COLUMN claim_until TEXT;
ALTER TABLE notifications ADD COLUMN parts_sent INTEGER NOT NULL DEFAULT 0;
CREATE INDEX notifications_channel_status ON notifications(channel, status, id);
CREATE TABLE notify_state (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL
)
"""

# v5: real venues. Which venue each order went to (and its id there), and a log of venue events:
# reconciliation discrepancies, rate limits, bans, clock resyncs, rejects, failovers.
SCHEMA_V5 = """
ALTER TABLE orders ADD COLUMN venue TEXT;
ALTER TABLE orders ADD COLUMN venue_order_id TEXT;
CREATE TABLE venue_events (
    id               INTEGER PRIMARY KEY,
    agent            TEXT NOT NULL,
    venue            TEXT NOT NULL,
    ts               TEXT NOT NULL,
    kind             TEXT NOT NULL,
    symbol           TEXT,
    client_order_id  TEXT,
    detail_json      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX venue_events_agent_ts ON venue_events(agent, ts)
"""

# v6: parameter promotions (tracer params promote / rollback / auto-apply): every change of an agent's
# active parameter set, with the set before it, the proposal's metrics and who made it.
SCHEMA_V6 = """
CREATE TABLE param_promotions (
    id             INTEGER PRIMARY KEY,
    ts             TEXT NOT NULL,
    agent          TEXT NOT NULL,
    action         TEXT NOT NULL,
    params_json    TEXT NOT NULL,
    previous_json  TEXT NOT NULL,
    proposal_json  TEXT NOT NULL DEFAULT '{}',
    code_version   TEXT,
    actor          TEXT NOT NULL,
    reason         TEXT NOT NULL DEFAULT '',
    rolled_back    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX param_promotions_agent ON param_promotions(agent, id)
"""

# v7: research. Universe scans, the calls they made (one per asset and timeframe, with the thesis and
# the plan), evaluation runs, and each call's outcome once its horizon has passed.
SCHEMA_V7 = """
CREATE TABLE universe_runs (
    id           INTEGER PRIMARY KEY,
    as_of        TEXT NOT NULL,
    params_hash  TEXT NOT NULL,
    feed         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    assets       INTEGER NOT NULL DEFAULT 0,
    artifact     TEXT,
    doc_json     TEXT NOT NULL,
    UNIQUE (as_of, params_hash)
);
CREATE TABLE research_calls (
    id               INTEGER PRIMARY KEY,
    universe_run_id  INTEGER NOT NULL REFERENCES universe_runs(id),
    symbol           TEXT NOT NULL,
    timeframe        TEXT NOT NULL,
    as_of            TEXT NOT NULL,
    rank             INTEGER NOT NULL,
    action           TEXT NOT NULL CHECK (action IN ('Buy','Sell','Watch')),
    risk_band        TEXT NOT NULL,
    readiness        TEXT NOT NULL,
    side             INTEGER NOT NULL,
    price            REAL NOT NULL,
    atr              REAL NOT NULL,
    entry_low        REAL NOT NULL,
    entry_high       REAL NOT NULL,
    stop             REAL NOT NULL,
    risk             REAL NOT NULL CHECK (risk > 0),
    targets_json     TEXT NOT NULL,
    horizon_end      TEXT NOT NULL,
    composite        REAL,
    quality          REAL,
    conviction       REAL,
    evidence         TEXT NOT NULL,
    UNIQUE (universe_run_id, symbol, timeframe)
);
CREATE INDEX research_calls_horizon ON research_calls(horizon_end);
CREATE TABLE eval_runs (
    id            INTEGER PRIMARY KEY,
    created_at    TEXT NOT NULL,
    as_of         TEXT NOT NULL,
    calls         INTEGER NOT NULL,
    evaluated     INTEGER NOT NULL,
    pending       INTEGER NOT NULL,
    no_data       INTEGER NOT NULL,
    summary_json  TEXT NOT NULL,
    artifact      TEXT
);
CREATE TABLE research_outcomes (
    call_id       INTEGER PRIMARY KEY REFERENCES research_calls(id),
    eval_run_id   INTEGER NOT NULL REFERENCES eval_runs(id),
    exit_ts       TEXT NOT NULL,
    exit_price    REAL NOT NULL,
    move          REAL NOT NULL,
    return_pct    REAL NOT NULL,
    r_multiple    REAL,
    hit           INTEGER NOT NULL CHECK (hit IN (0, 1)),
    first_touch   TEXT NOT NULL,
    mfe_r         REAL NOT NULL,
    mae_r         REAL NOT NULL
)
"""

# v8: the daily trade cap counts today's entries every cycle: an index so that it stays a range scan as
# orders pile up (it scanned every order of the agent).
SCHEMA_V8 = """
CREATE INDEX orders_agent_purpose_created ON orders(agent, purpose, created_at)
"""

# v9: venue execution under faults. A position's exits and stops that ended without closing it (a partial
# exit, a refused stop) are counted, so the next one gets a new client id; funding payments are booked from
# the venue's income history, once each (the venue's id), on the position they were paid for. A position closed
# in parts has one trade per part: a trade's exit order is unique, its entry order no longer.
SCHEMA_V9 = """
ALTER TABLE positions ADD COLUMN exit_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE positions ADD COLUMN stop_seq INTEGER NOT NULL DEFAULT 0;
CREATE TABLE funding_payments (
    id              INTEGER PRIMARY KEY,
    agent           TEXT NOT NULL,
    venue           TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    ts              TEXT NOT NULL,
    amount          REAL NOT NULL,
    venue_ref       TEXT NOT NULL,
    entry_order_id  TEXT,
    booked_at       TEXT NOT NULL,
    UNIQUE (agent, venue, venue_ref)
);
CREATE INDEX funding_payments_entry ON funding_payments(entry_order_id);
CREATE TABLE trades_v9 (
    id              INTEGER PRIMARY KEY,
    agent           TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('long','short')),
    qty             REAL NOT NULL,
    entry_ts        TEXT NOT NULL,
    entry_price     REAL NOT NULL,
    exit_ts         TEXT NOT NULL,
    exit_price      REAL NOT NULL,
    leverage        REAL NOT NULL DEFAULT 1,
    fees            REAL NOT NULL,
    funding         REAL NOT NULL DEFAULT 0,
    pnl             REAL NOT NULL,
    return_pct      REAL NOT NULL,
    exit_reason     TEXT NOT NULL,
    entry_order_id  TEXT NOT NULL REFERENCES orders(client_order_id),
    exit_order_id   TEXT NOT NULL UNIQUE,
    signal_id       INTEGER REFERENCES signals(id)
);
INSERT INTO trades_v9 SELECT id, agent, symbol, side, qty, entry_ts, entry_price, exit_ts, exit_price, leverage, fees,
    funding, pnl, return_pct, exit_reason, entry_order_id, exit_order_id, signal_id FROM trades;
DROP TABLE trades;
ALTER TABLE trades_v9 RENAME TO trades;
CREATE INDEX trades_agent_exit ON trades(agent, exit_ts);
CREATE INDEX trades_entry ON trades(entry_order_id)
"""

# ===== monitoring record (operations, tracer/monitor/records.py) ===========================================
# v10: every health result, watchdog restart or give-up, heal action and alert, kept for
# TB_MONITOR_RETENTION_DAYS (pruned by tracer.monitor.records). Separate from the trading tables: written
# only by the monitoring scripts, read by scripts/monitoring_status.sh.
SCHEMA_V10_MONITORING = """
CREATE TABLE monitor_events (
    id       INTEGER PRIMARY KEY,
    ts       TEXT NOT NULL,
    source   TEXT NOT NULL,
    kind     TEXT NOT NULL,
    name     TEXT NOT NULL,
    level    INTEGER NOT NULL CHECK (level IN (0, 1, 2)),
    message  TEXT NOT NULL
);
CREATE INDEX monitor_events_ts ON monitor_events(ts);
CREATE INDEX monitor_events_name_ts ON monitor_events(name, ts)
"""
# ===== end of the monitoring record ========================================================================

# v11: research calls scored against a naive baseline (the sign of the 20-day trend) on the same bars
SCHEMA_V11 = """
ALTER TABLE research_outcomes ADD COLUMN baseline_side INTEGER;
ALTER TABLE research_outcomes ADD COLUMN baseline_hit INTEGER;
ALTER TABLE research_outcomes ADD COLUMN baseline_r REAL
"""

MIGRATIONS: list[str] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8,
                         SCHEMA_V9, SCHEMA_V10_MONITORING, SCHEMA_V11]
SCHEMA_VERSION = len(MIGRATIONS)


def iso(dt: datetime | None) -> str | None:
    """UTC datetime -> ``YYYY-MM-DDTHH:MM:SSZ`` (microseconds kept when present)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        raise ValueError("naive datetime: every time in Tracer Bullet is UTC-aware")
    dt = dt.astimezone(timezone.utc)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if dt.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return dt.strftime(fmt)


def parse_iso(s: str | None) -> datetime | None:
    if s is None:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc)


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return iso(v)
    if isinstance(v, Enum):
        return v.value
    if is_dataclass(v) and not isinstance(v, type):
        return {k: _jsonable(x) for k, x in asdict(v).items()}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and v != v:       # NaN is not valid JSON
        return None
    if hasattr(v, "item"):                     # numpy scalar
        return _jsonable(v.item())
    return v


def to_json(v: Any) -> str:
    return json.dumps(_jsonable(v), sort_keys=True, allow_nan=False)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def is_storage_fault(e: BaseException) -> bool:
    """The DB cannot take a write now (locked past the busy timeout, read-only, disk full, I/O error),
    as opposed to a bug (a constraint violated, a bad statement): worth a rollback and a retry."""
    if isinstance(e, sqlite3.OperationalError):
        return True
    return type(e) is sqlite3.DatabaseError     # e.g. "disk I/O error" surfaced as the base class


class Store:
    """The project's single SQLite file. Thin: SQL in, rows out; no trading logic."""

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
        self.conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=self.busy_timeout_s)
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

    def set_order_venue(self, client_order_id: str, venue: str, venue_order_id: str | None = None) -> None:
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
               stop_seq=excluded.stop_seq, entry_fee=excluded.entry_fee""",
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
        return True

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

    # --- notifications outbox ------------------------------------------------------------
    def enqueue_notification(self, channel: str, kind: str, message: str, agent: str | None = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO notifications(created_at, agent, channel, kind, message) VALUES (?,?,?,?,?)",
            (iso(utcnow()), agent, channel, kind, message))
        return int(cur.lastrowid)

    def pending_notifications(self, channel: str) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM notifications WHERE channel=? AND status='pending' ORDER BY id",
                                 (channel,)).fetchall()

    def mark_notification(self, nid: int, status: str, error: str | None = None) -> None:
        self.conn.execute(
            "UPDATE notifications SET status=?, attempts=attempts+1, last_error=?, "
            "sent_at=CASE WHEN ?='sent' THEN ? ELSE sent_at END WHERE id=?",
            (status, error, status, iso(utcnow()), nid))

    # Delivery claims (tracer.notify.worker): a row is sent only by the worker holding its claim; a claim
    # whose lease ran out (its process died) can be taken again, so a restart resends what was pending.
    def claim_notification(self, channel: str, worker: str, lease_s: float) -> sqlite3.Row | None:
        """Atomically claim the oldest pending, unclaimed (or lease-expired) row of ``channel``."""
        now = utcnow().replace(microsecond=0)
        with self.transaction():
            row = self.conn.execute(
                "SELECT id FROM notifications WHERE channel=? AND status='pending' "
                "AND (claim_until IS NULL OR claim_until < ?) ORDER BY id LIMIT 1", (channel, iso(now))).fetchone()
            if row is None:
                return None
            self.conn.execute("UPDATE notifications SET claimed_by=?, claim_until=? WHERE id=?",
                              (worker, iso(now + timedelta(seconds=lease_s)), row["id"]))
            return self.conn.execute("SELECT * FROM notifications WHERE id=?", (row["id"],)).fetchone()

    def record_notification_attempt(self, nid: int, worker: str, *, parts_sent: int, error: str | None,
                                    extend_s: float | None = None) -> None:
        """Count one delivery attempt (still pending); optionally extend the claim's lease."""
        until = iso(utcnow().replace(microsecond=0) + timedelta(seconds=extend_s)) if extend_s else None
        with self.transaction():
            self.conn.execute(
                "UPDATE notifications SET attempts=attempts+1, parts_sent=?, last_error=?, "
                "claim_until=COALESCE(?, claim_until) WHERE id=? AND claimed_by=?",
                (parts_sent, error, until, nid, worker))

    def finish_notification(self, nid: int, worker: str, status: str, error: str | None = None) -> None:
        """Final state of a claimed row: ``sent`` or ``failed`` (with the error); the claim is dropped."""
        with self.transaction():
            self.conn.execute(
                "UPDATE notifications SET status=?, last_error=?, claimed_by=NULL, claim_until=NULL, "
                "sent_at=CASE WHEN ?='sent' THEN ? ELSE sent_at END WHERE id=? AND claimed_by=?",
                (status, error, status, iso(utcnow()), nid, worker))

    def release_notification(self, nid: int, worker: str) -> None:
        """Give a claimed row back (still pending) so the next worker pass or process sends it."""
        with self.transaction():
            self.conn.execute("UPDATE notifications SET claimed_by=NULL, claim_until=NULL "
                              "WHERE id=? AND claimed_by=?", (nid, worker))

    def notify_state(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM notify_state WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_notify_state(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO notify_state(key, value, updated_at) VALUES (?,?,?) ON CONFLICT(key) "
                          "DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
                          (key, value, iso(utcnow())))

    def trade_stats(self, agent: str, since: datetime | None = None, until: datetime | None = None
                    ) -> tuple[int, float, int]:
        """(closed trades, summed P&L, winning trades) of ``agent`` with since <= exit_ts < until."""
        row = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(pnl),0), COALESCE(SUM(pnl>0),0) FROM trades WHERE agent=? "
            "AND (? IS NULL OR exit_ts>=?) AND (? IS NULL OR exit_ts<?)",
            (agent, iso(since), iso(since), iso(until), iso(until))).fetchone()
        return int(row[0]), float(row[1]), int(row[2])

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


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (no semicolons inside our DDL strings)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def row_to_order(r: sqlite3.Row) -> Order:
    return Order(client_order_id=r["client_order_id"], agent=r["agent"], symbol=r["symbol"], side=Side(r["side"]),
                 qty=r["qty"], type=OrderType(r["type"]), reduce_only=bool(r["reduce_only"]),
                 leverage=r["leverage"], purpose=r["purpose"], reason=r["reason"],
                 # a venue stop / target keeps its trigger price in price_est
                 stop_price=r["price_est"] if r["type"] != OrderType.MARKET.value else None,
                 created_at=parse_iso(r["created_at"]))


__all__ = ["Store", "is_storage_fault", "iso", "parse_iso", "to_json", "row_to_order", "SCHEMA_VERSION", "utcnow"]

