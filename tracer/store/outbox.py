"""The notifications outbox (claims, attempts, delivery) and the notifiers' small state."""
from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta

from tracer.store.codec import iso, parse_iso, utcnow
from tracer.store.connection import Connection


class OutboxTables(Connection):
    """Mixin of :class:`~tracer.store.Store`: the outbox."""

    # --- notifications outbox ------------------------------------------------------------
    def enqueue_notification(self, channel: str, kind: str, message: str, agent: str | None = None) -> int:
        [nid] = self.enqueue_notifications([channel], kind, message, agent)
        return nid

    def enqueue_notifications(self, channels: Sequence[str], kind: str, message: str,
                              agent: str | None = None) -> list[int]:
        """One row per channel of one message. The rows share their ``created_at``: it is what tells the rows of
        one message from those of another with the same text (:meth:`recent_alerts`)."""
        now = iso(utcnow())
        return [int(self.conn.execute(
            "INSERT INTO notifications(created_at, agent, channel, kind, message) VALUES (?,?,?,?,?)",
            (now, agent, ch, kind, message)).lastrowid or 0) for ch in channels]

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
    # ``claim_until`` of an unclaimed pending row is a not-before time (a rate limit longer than the worker waits).
    # Times are whole seconds, so that the text comparison with ``now`` is a time comparison.
    def claim_notification(self, channel: str, worker: str, lease_s: float) -> sqlite3.Row | None:
        """Atomically claim the oldest pending row of ``channel`` that is free (unclaimed, or its lease ran out,
        and past its not-before time). A row some worker is sending (a live claim) is never overtaken, so a
        channel's messages arrive in id order whichever process sends them, and one given back to wait out the
        channel's rate limit neither; one given back after an error of its own is, so that it never holds back a
        kill-switch alert."""
        now = iso(utcnow().replace(microsecond=0))
        with self.transaction():
            row = None
            for r in self.conn.execute("SELECT id, claimed_by, claim_until FROM notifications WHERE channel=? AND "
                                       "status='pending' ORDER BY id", (channel,)):
                if r["claim_until"] is None or r["claim_until"] < now:
                    row = r
                    break
                if r["claimed_by"] is not None:      # being sent, or the channel's rate limit: what follows waits
                    return None
            if row is None:
                return None
            self.conn.execute("UPDATE notifications SET claimed_by=?, claim_until=? WHERE id=?",
                              (worker, _later(lease_s), row["id"]))
            return self.conn.execute("SELECT * FROM notifications WHERE id=?", (row["id"],)).fetchone()

    def record_notification_attempt(self, nid: int, worker: str, *, parts_sent: int, error: str | None,
                                    extend_s: float | None = None) -> None:
        """Count one delivery attempt (still pending); optionally extend the claim's lease."""
        until = _later(extend_s) if extend_s else None
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

    def release_notification(self, nid: int, worker: str, not_before_s: float | None = None,
                             hold_channel: bool = False) -> None:
        """Give a claimed row back (still pending) so the next worker pass or process sends it, at once or
        ``not_before_s`` seconds from now; with ``hold_channel`` (the channel's rate limit) the rows behind it
        wait too, else they may go meanwhile (:meth:`claim_notification`)."""
        until = _later(not_before_s) if not_before_s else None
        with self.transaction():
            self.conn.execute("UPDATE notifications SET claimed_by=?, claim_until=? WHERE id=? AND claimed_by=?",
                              (CHANNEL_HELD if hold_channel and until else None, until, nid, worker))

    def notification_states(self, ids: list[int]) -> list[sqlite3.Row]:
        """(channel, status) of the notifications ``ids``."""
        if not ids:
            return []
        return self.conn.execute(f"SELECT id, channel, status FROM notifications WHERE id IN ({','.join('?' * len(ids))})",
                                 ids).fetchall()

    def claimed_notifications(self, channel: str) -> list[sqlite3.Row]:
        """(id, claimed_by) of the pending notifications of ``channel`` that a worker has claimed."""
        return self.conn.execute("SELECT id, claimed_by FROM notifications WHERE channel=? AND status='pending' "
                                 "AND claimed_by IS NOT NULL", (channel,)).fetchall()

    def notify_state(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM notify_state WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def notify_state_at(self, key: str) -> datetime | None:
        """When ``key`` was last written."""
        row = self.conn.execute("SELECT updated_at FROM notify_state WHERE key=?", (key,)).fetchone()
        return None if row is None or not row[0] else parse_iso(row[0])

    def set_notify_state(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO notify_state(key, value, updated_at) VALUES (?,?,?) ON CONFLICT(key) "
                          "DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
                          (key, value, iso(utcnow())))


# the claim of a row given back to wait out its channel's rate limit: no worker's (never freed as a dead one's)
CHANNEL_HELD = "channel-rate-limited"


def _later(seconds: float) -> str | None:
    """``seconds`` from now, rounded up to a whole second (the resolution of the claim times)."""
    return iso(utcnow().replace(microsecond=0) + timedelta(seconds=math.ceil(seconds)))
