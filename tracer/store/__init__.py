"""SQLite persistence: one file, one schema, WAL, foreign keys, versioned migrations.

Every trading decision is written here with its inputs, scores and reason, so that
any order can be explained afterwards (``tracer explain``). Writes of one agent cycle
happen in one transaction (:meth:`Store.transaction`): a crash mid-cycle leaves no
half-written cycle, and the restarted agent redoes that cycle from the same clock.

Times are stored as ISO 8601 UTC text (``2022-01-10T05:00:00Z``).
"""
from __future__ import annotations

from tracer.store.caches import CacheTables
from tracer.store.cockpit import CockpitTables
from tracer.store.codec import is_storage_fault, iso, parse_iso, row_to_order, to_json, utcnow
from tracer.store.connection import Connection
from tracer.store.outbox import OutboxTables
from tracer.store.promotions import Promotions
from tracer.store.research import ResearchTables
from tracer.store.schema import MIGRATIONS, SCHEMA_VERSION
from tracer.store.trading import TradingTables


class Store(TradingTables, OutboxTables, Promotions, ResearchTables, CacheTables, CockpitTables, Connection):
    """The project's single SQLite file. Thin: SQL in, rows out; no trading logic."""


__all__ = ["Store", "Connection", "MIGRATIONS", "SCHEMA_VERSION", "is_storage_fault", "iso", "parse_iso", "to_json",
           "row_to_order", "utcnow"]
