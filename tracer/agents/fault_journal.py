"""The orders an agent sends while its DB cannot take writes (a storage fault), journaled first.

A venue agent keeps managing exits during a storage fault (:meth:`tracer.agents.loop.AgentLoop._exits_during_fault`):
reduce-only exits and protective stops go to the venue although the DB cannot record them. Each one is
appended here, flushed and fsynced, *before* it is sent; no journal line, no order. At the next start or
recovery the lines are written to the ``orders`` table (state ``new``: reconciliation asks the venue by client
order id and books what it did) with a ``venue_events`` row saying when and why, then the file is removed.
Importing twice is harmless: an order id already in the DB is never inserted again.

File: ``TB_STATE_DIR/fault_orders_<agent>.jsonl``, user-only; one JSON object per line with the
``orders`` columns :func:`tracer.store.row_to_order` reads.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from tracer.store import Store, iso, parse_iso, row_to_order, utcnow
from tracer.logs import kv
from tracer.models import Order

__all__ = ["journal_path", "append", "pending", "import_into"]


def journal_path(state_dir: str | Path, agent: str) -> Path:
    return Path(state_dir) / f"fault_orders_{agent}.jsonl"


def append(path: Path, order: Order, venue: str, fault: dict[str, Any] | None) -> None:
    """One order, durably (flush + fsync) before it may be sent. Raises OSError when it cannot be written
    (the disk may be what is full): the caller then does not send it."""
    row = {"client_order_id": order.client_order_id, "agent": order.agent, "symbol": order.symbol,
           "side": order.side.value, "qty": order.qty, "type": order.type.value, "reduce_only": order.reduce_only,
           "leverage": order.leverage, "purpose": order.purpose, "reason": order.reason, "venue": venue,
           "price_est": order.stop_price, "created_at": iso(order.created_at or utcnow()),
           "journaled_at": iso(utcnow()), "fault_since": (fault or {}).get("since"),
           "fault_error": (fault or {}).get("error")}
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    data = memoryview((json.dumps(row, sort_keys=True) + "\n").encode("utf-8"))
    # unbuffered: a failed write leaves nothing queued that a later flush could append after the cut
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)      # user-only, like private_open
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        except OSError:
            # a short write (the disk full) must not glue the next line to a torn one: cut it off
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)
    if created:     # the new file's name itself must survive a power loss
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def pending(path: Path) -> list[dict[str, Any]]:
    """The journal's complete lines (a line cut short by a crash while it was written is ignored: its order
    was never sent, the append had not returned)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in raw.splitlines():
        try:
            row = json.loads(line.decode("utf-8"))
        except ValueError:          # UnicodeDecodeError and JSONDecodeError included
            continue
        if isinstance(row, dict) and isinstance(row.get("client_order_id"), str) and row["client_order_id"]:
            out.append(row)
    return out


def import_into(store: Store, path: Path, agent: str, log: logging.Logger | None = None) -> list[str]:
    """Write the journal's orders to the DB (in one transaction) and remove the file; returns their ids.
    Raises the storage error when the DB still cannot take them (the file is kept)."""
    rows = [r for r in pending(path) if r.get("agent") == agent]
    if not rows:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        return []
    done, bad = [], []
    with store.transaction():
        recorded = {e["client_order_id"] for e in store.venue_events(agent, "sent_during_storage_fault")}
        for r in rows:
            try:
                order = row_to_order(r)     # type: ignore[arg-type]  (the same keys as an orders row)
                ts = parse_iso(r["journaled_at"]) if r.get("journaled_at") else utcnow()
            except (KeyError, TypeError, ValueError):
                bad.append(str(r.get("client_order_id")))
                continue
            cid = order.client_order_id
            store.insert_order(order, run_id=None, signal_id=None, price_est=r.get("price_est"))  # no-op if known
            row = store.order(cid)
            if r.get("venue") and row is not None and not row["venue"]:
                store.set_order_venue(cid, str(r["venue"]), None)
            if cid in recorded:
                continue        # imported before (a crash between the commit and the unlink)
            recorded.add(cid)
            store.insert_venue_event(agent, str(r.get("venue") or ""), "sent_during_storage_fault", symbol=order.symbol,
                                     client_order_id=cid,
                                     detail={"journaled_at": r.get("journaled_at"), "fault_since": r.get("fault_since"),
                                             "fault_error": r.get("fault_error"), "reason": order.reason},
                                     ts=ts)
            done.append(cid)
    if bad:
        (log or logging.getLogger("tracer.fault_journal")).error(kv(
            "fault_journal_unreadable", client_order_ids=",".join(bad),
            note="lines that could not be read; reconciliation still books what the venue did"))
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass            # imported; a file left behind is imported again as a no-op
    return done
