"""The schema: one versioned migration per change, applied in order (``PRAGMA user_version``).

Times are stored as ISO 8601 UTC text (``2022-01-10T05:00:00Z``)."""
from __future__ import annotations

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

# ===== monitoring record (operations, tracer/ops/records.py) ===========================================
# v10: every health result, watchdog restart or give-up, heal action and alert, kept for
# TB_MONITOR_RETENTION_DAYS (pruned by tracer.ops.records). Separate from the trading tables: written
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

# v12: the cockpit's operator requests (Telegram /forceexit and /reload, the web API's force-exit): written by the
# listener or the web server, carried out by the agent at its next cycle, which records the outcome on the row
SCHEMA_V12 = """
CREATE TABLE control_requests (
    id          INTEGER PRIMARY KEY,
    ts          TEXT NOT NULL,
    agent       TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('force_exit','reload')),
    target      TEXT,                         -- force_exit: a symbol or 'all'
    actor       TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','done','failed')),
    result      TEXT,
    done_at     TEXT,
    done_clock  TEXT
);
CREATE INDEX control_requests_agent_status ON control_requests(agent, status, id)
"""

MIGRATIONS: list[str] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8,
                         SCHEMA_V9, SCHEMA_V10_MONITORING, SCHEMA_V11, SCHEMA_V12]
SCHEMA_VERSION = len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (no semicolons inside our DDL strings)."""
    return [s.strip() for s in script.split(";") if s.strip()]
