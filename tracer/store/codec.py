"""Values in and out of the DB: UTC times as ISO text, JSON of dataclasses and enums, rows to orders,
and what counts as a storage fault (worth a retry) rather than a bug."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from tracer.models import Order, OrderType, Side


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


_PLAIN = (str, int, bool, type(None))


def _jsonable(v: Any) -> Any:
    t = type(v)
    if t is float:                             # the common cases first: a signal's inputs are mostly numbers
        return None if v != v else v
    if t in _PLAIN:
        return v
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


def row_to_order(r: sqlite3.Row) -> Order:
    return Order(client_order_id=r["client_order_id"], agent=r["agent"], symbol=r["symbol"], side=Side(r["side"]),
                 qty=r["qty"], type=OrderType(r["type"]), reduce_only=bool(r["reduce_only"]),
                 leverage=r["leverage"], purpose=r["purpose"], reason=r["reason"],
                 # a venue stop / target keeps its trigger price in price_est
                 stop_price=r["price_est"] if r["type"] != OrderType.MARKET.value else None,
                 created_at=parse_iso(r["created_at"]))
