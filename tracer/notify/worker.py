"""The outbox delivery worker: sends pending Discord/Telegram rows, never blocking the trading loop.

Contract:

- One :class:`OutboxWorker` thread per remote channel, with its own SQLite connection. It claims
  the oldest pending row of its channel (:meth:`Store.claim_notification`: an atomic ``BEGIN
  IMMEDIATE`` claim with a lease), so two processes sharing the DB (the two agents, the Telegram
  listener, ``tracer notify-flush``) never send the same row twice. Rows are sent in id order: only the
  lowest pending row of a channel can be claimed, so while one process retries it, no other sends the next.
- A row is cut into parts that fit the platform (Discord 2000, Telegram 4096 characters);
  ``parts_sent`` records progress, so a retry or a restart never resends a delivered part.
- Each part is tried up to ``TB_NOTIFY_MAX_ATTEMPTS`` times (tenacity): a transient failure (429,
  5xx, timeout, connection) waits the server's ``retry_after`` when given (Discord's rate-limit headers
  or 429 body; Telegram ``RetryAfter``), else exponential backoff from ``TB_NOTIFY_BACKOFF_S``. No wait
  is longer than ``TB_NOTIFY_BACKOFF_MAX_S``: a server asking for more gets the row released (still
  pending, claimable again that many seconds later) rather than a worker asleep on its claim; a
  released row whose ``attempts`` reached the maximum is marked ``failed`` instead, so it cannot hold
  back its channel's later rows for ever. Every try counts in ``attempts`` with its error in ``last_error``.
  A permanent failure (401, 403, 404, 400 ...) or the last try failing marks the row ``failed``
  with the error; success marks it ``sent``. Error texts are redacted of every secret.
- Stopping (:meth:`OutboxWorker.stop`) interrupts a retry wait: the row goes back to ``pending``.
  A row claimed by a process that died is freed at the next worker start on the same host (dead
  pid), or anywhere once its lease runs out: a restart resends what was pending.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from tracer.store import Store
from tracer.logs import kv
from tracer.notify.format import redact
from tracer.notify.delivery import DeliveryError, Sender
from tracer.notify.outbox import make_sender, remote_channels

LEASE_BASE_S = 60.0


class _Stopped(Exception):
    """Raised out of a retry wait when the worker is asked to stop."""


class _TooLong(Exception):
    """Raised instead of a retry wait longer than ``TB_NOTIFY_BACKOFF_MAX_S``."""

    def __init__(self, seconds: float):
        super().__init__(f"retry wait {seconds:g}s")
        self.seconds = seconds


@dataclass(frozen=True)
class Outcome:
    """What happened to one row: ``sent``, ``failed``, ``released`` (back to pending) or ``held``
    (an unexpected error: still pending, tried again when its claim's lease runs out)."""
    nid: int
    status: str
    attempts: int
    error: str | None = None


class _Wait:
    """tenacity wait: the server's retry_after when it gave one, else exponential backoff."""

    def __init__(self, base: float, cap: float):
        self._exp = wait_exponential(multiplier=base, max=cap)

    def __call__(self, rs: Any) -> float:
        exc = rs.outcome.exception() if rs.outcome is not None else None
        if isinstance(exc, DeliveryError) and exc.retry_after is not None:
            return exc.retry_after
        return self._exp(rs)


def display_text(agent: str | None, message: str) -> str:
    """The text as sent: prefixed with the agent's name, since both agents share one chat."""
    return f"[{agent}] {message}" if agent else message


def worker_id(channel: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{channel}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_dead_claims(store: Store, channel: str) -> int:
    """Free the claims held by processes of this host that no longer exist. Returns how many."""
    host = socket.gethostname()
    n = 0
    for r in store.claimed_notifications(channel):
        parts = str(r["claimed_by"]).split(":")
        if len(parts) >= 2 and parts[0] == host and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            store.release_notification(r["id"], r["claimed_by"])
            n += 1
    return n


class Deliverer:
    """Sends claimed rows of one channel through one :class:`Sender` (synchronous; the thread is
    :class:`OutboxWorker`). ``stop`` interrupts retry waits."""

    def __init__(self, store: Store, sender: Sender, settings: Any, log: logging.Logger,
                 stop: threading.Event | None = None, wid: str | None = None):
        self.store = store
        self.sender = sender
        self.s = settings
        self.log = log
        self.stop = stop or threading.Event()
        self.channel = sender.channel
        self.wid = wid or worker_id(self.channel)
        self.secrets = settings.secret_values()
        self.lease_s = LEASE_BASE_S + 2 * settings.notify_timeout_s
        self.waits: list[float] = []       # every retry wait asked for, in seconds (observability)

    def _sleep(self, seconds: float) -> None:
        if seconds > self.s.notify_backoff_max_s:
            # a misread unit or an abusive Retry-After must not park the worker (and its row) for hours
            raise _TooLong(seconds)
        self.waits.append(seconds)
        if self.stop.wait(seconds):
            raise _Stopped()

    def drain(self, deadline: float | None = None) -> list[Outcome]:
        """Claim and deliver pending rows until none is left, ``stop`` is set or ``deadline``
        (``time.monotonic()``) passes. Returns what happened to each row."""
        out = []
        while not self.stop.is_set() and (deadline is None or time.monotonic() < deadline):
            row = self.store.claim_notification(self.channel, self.wid, self.lease_s)
            if row is None:
                break
            out.append(self.deliver(row))
        return out

    def deliver(self, row: Any) -> Outcome:
        """Send the parts of one claimed row not yet sent; record the outcome."""
        nid = int(row["id"])
        attempts = int(row["attempts"])
        done = int(row["parts_sent"])
        error: str | None = None
        try:
            parts = self.sender.parts(display_text(row["agent"], row["message"])) or [""]
            for i in range(done, len(parts)):
                def attempt(part: str = parts[i]) -> None:
                    self.sender.send_part(part)

                def after(rs: Any) -> None:   # a failed try: count it, keep the lease ahead of the wait
                    nonlocal attempts, error
                    attempts += 1
                    exc = rs.outcome.exception()
                    error = redact(str(exc), self.secrets)[:500]
                    self.store.record_notification_attempt(nid, self.wid, parts_sent=i, error=error,
                                                           extend_s=self.lease_s + self.s.notify_backoff_max_s)
                    self.log.warning(kv("notify_retry", channel=self.channel, id=nid, attempt=attempts,
                                        error=error))

                retrying = Retrying(
                    stop=stop_after_attempt(self.s.notify_max_attempts),
                    wait=_Wait(self.s.notify_backoff_s, self.s.notify_backoff_max_s),
                    retry=retry_if_exception(lambda e: isinstance(e, DeliveryError) and e.transient),
                    after=after, sleep=self._sleep, reraise=True)
                retrying(attempt)
                attempts += 1      # the successful try
                done = i + 1
                self.store.record_notification_attempt(nid, self.wid, parts_sent=done, error=None,
                                                       extend_s=self.lease_s)
        except _Stopped:
            self.store.release_notification(nid, self.wid)
            return Outcome(nid, "released", attempts, error)
        except _TooLong as e:
            self.log.warning(kv("notify_deferred", channel=self.channel, id=nid, asked_s=e.seconds,
                                retry_in_s=self.s.notify_backoff_max_s, attempts=attempts))
            if attempts >= self.s.notify_max_attempts:
                self.store.finish_notification(nid, self.wid, "failed", error)
                self.log.error(kv("notify_failed", channel=self.channel, id=nid, kind=row["kind"], attempts=attempts,
                                  error=error))
                return Outcome(nid, "failed", attempts, error)
            self.store.release_notification(nid, self.wid, not_before_s=self.s.notify_backoff_max_s,
                                            hold_channel=True)
            return Outcome(nid, "released", attempts, error)
        except DeliveryError as e:
            if not e.transient:      # a permanent failure is not passed to ``after``: count its try
                attempts += 1
                error = redact(str(e), self.secrets)[:500]
                self.store.record_notification_attempt(nid, self.wid, parts_sent=done, error=error)
            self.store.finish_notification(nid, self.wid, "failed", error)
            self.log.error(kv("notify_failed", channel=self.channel, id=nid, kind=row["kind"], attempts=attempts,
                              error=error))
            return Outcome(nid, "failed", attempts, error)
        except Exception as e:       # a bug or an unexpected library error: count it, log, move on
            attempts += 1
            error = redact(f"{type(e).__name__}: {e}", self.secrets)[:500]
            self.store.record_notification_attempt(nid, self.wid, parts_sent=done, error=error)
            self.log.error(kv("notify_error", channel=self.channel, id=nid, error=error))
            if attempts >= self.s.notify_max_attempts:
                self.store.finish_notification(nid, self.wid, "failed", error)
                return Outcome(nid, "failed", attempts, error)
            # given back to wait a backoff (the rows behind it go meanwhile), then tried again by any worker
            backoff = min(self.s.notify_backoff_s * 2 ** (attempts - 1), self.s.notify_backoff_max_s)
            self.store.release_notification(nid, self.wid, not_before_s=backoff)
            return Outcome(nid, "released", attempts, error)
        self.store.finish_notification(nid, self.wid, "sent", None)
        self.log.info(kv("notify_sent", channel=self.channel, id=nid, kind=row["kind"], parts=len(parts),
                         attempts=attempts))
        return Outcome(nid, "sent", attempts)


class OutboxWorker(threading.Thread):
    """A daemon thread delivering one channel's outbox every ``TB_NOTIFY_POLL_S`` (or at once after
    :meth:`wake`). Opens its own DB connection and sender inside the thread."""

    def __init__(self, channel: str, settings: Any, log: logging.Logger,
                 sender_factory: Callable[[str, Any, Any], Sender] = make_sender, final_drain_s: float = 5.0):
        super().__init__(name=f"outbox-{channel}", daemon=True)
        self.channel = channel
        self.s = settings
        self.log = log
        self.factory = sender_factory
        self.final_drain_s = final_drain_s
        self._stop_evt = threading.Event()
        self._wake = threading.Event()
        self.delivered: list[Outcome] = []

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop: a retry wait is interrupted (its row stays pending); rows already due get one last
        try for up to ``final_drain_s``; then the thread ends."""
        self._stop_evt.set()
        self._wake.set()
        self.join(timeout)

    def run(self) -> None:
        store = None
        sender = None
        try:
            store = Store(self.s.db_path)
            sender = self.factory(self.channel, self.s, store)
            dl = Deliverer(store, sender, self.s, self.log, self._stop_evt)
            freed = release_dead_claims(store, self.channel)
            if freed:
                self.log.info(kv("notify_reclaimed", channel=self.channel, rows=freed))
            while not self._stop_evt.is_set():
                try:
                    self.delivered.extend(dl.drain())
                except Exception as e:   # the DB busy beyond its timeout, ...: try again next pass
                    self.log.error(kv("notify_worker_error", channel=self.channel,
                                      error=redact(f"{type(e).__name__}: {e}", self.s.secret_values())))
                self._wake.wait(self.s.notify_poll_s)
                self._wake.clear()
            if self.final_drain_s > 0:   # last pass: rows due now, retry waits cut at the deadline
                final = Deliverer(store, sender, self.s, self.log, threading.Event(), dl.wid)
                timer = threading.Timer(self.final_drain_s, final.stop.set)
                timer.daemon = True
                timer.start()
                try:
                    self.delivered.extend(final.drain(deadline=time.monotonic() + self.final_drain_s))
                finally:
                    timer.cancel()
        except Exception as e:
            self.log.error(kv("notify_worker_stopped", channel=self.channel,
                              error=redact(f"{type(e).__name__}: {e}", self.s.secret_values())))
        finally:
            if sender is not None:
                sender.close()
            if store is not None:
                store.close()


def start_workers(settings: Any, log: logging.Logger,
                  sender_factory: Callable[[str, Any, Any], Sender] = make_sender) -> list[OutboxWorker]:
    """Start one worker per enabled remote channel (none when Discord and Telegram are off)."""
    workers = [OutboxWorker(ch, settings, log, sender_factory) for ch in remote_channels(settings)]
    for w in workers:
        w.start()
        log.info(kv("notify_worker_started", channel=w.channel))
    return workers


def stop_workers(workers: list[OutboxWorker], timeout: float = 10.0) -> None:
    for w in workers:
        w.stop(timeout)


def flush(settings: Any, log: logging.Logger, timeout_s: float = 20.0,
          sender_factory: Callable[[str, Any, Any], Sender] = make_sender) -> dict[str, list[Outcome]]:
    """Deliver what is pending now on every enabled remote channel, in this thread, for at most
    ``timeout_s`` (for one-shot commands such as an alert sent while the agents are down)."""
    out: dict[str, list[Outcome]] = {}
    store = Store(settings.db_path)
    try:
        for ch in remote_channels(settings):
            try:
                sender = sender_factory(ch, settings, store)
            except Exception as e:    # e.g. a webhook URL that is not http(s): nothing can be sent
                err = redact(f"{type(e).__name__}: {e}", settings.secret_values())
                log.error(kv("notify_sender_error", channel=ch, error=err))
                out[ch] = [Outcome(0, "failed", 0, err)]
                continue
            stop = threading.Event()
            timer = threading.Timer(timeout_s, stop.set)
            timer.daemon = True
            timer.start()
            try:
                release_dead_claims(store, ch)
                out[ch] = Deliverer(store, sender, settings, log, stop).drain(deadline=time.monotonic() + timeout_s)
            finally:
                timer.cancel()
                sender.close()
    finally:
        store.close()
    return out


def notify_command(settings: Any, test: bool = False, timeout_s: float = 20.0) -> int:
    """``tracer notify``: optionally queue a test message, then deliver what is pending now.
    Prints one line per channel; exit 0 when nothing failed, 1 otherwise, 2 when no remote channel is on."""
    from tracer.notify.outbox import enqueue

    log = logging.getLogger("tracer.notify")
    if not remote_channels(settings):
        print("notify: Discord and Telegram are off (set TB_DISCORD_WEBHOOK_URL, or TB_TELEGRAM_BOT_TOKEN "
              "with TB_TELEGRAM_CHAT_ID)")
        return 2
    store = Store(settings.db_path)
    try:
        if test:
            with store.transaction():
                enqueue(store, settings, "test", "✅ Tracer Bullet test message: notifications work")
    finally:
        store.close()
    results = flush(settings, log, timeout_s)
    failed = 0
    for ch, outs in results.items():
        counts = {k: sum(o.status == k for o in outs) for k in ("sent", "failed", "released")}
        failed += counts["failed"]
        errors = sorted({o.error for o in outs if o.status == "failed" and o.error})
        print(f"{ch}: sent {counts['sent']}, failed {counts['failed']}, still pending {counts['released']}"
              + (f" (last error: {errors[-1]})" if errors else ""))
    return 1 if failed else 0


def deliver_now(settings: Any) -> None:
    """Send what is pending on Discord/Telegram now, from a process that is not an agent (an alert from the health
    check or a watchdog): the agents, whose worker threads normally deliver, may be the very thing that is down."""
    if not remote_channels(settings):
        return
    log = logging.getLogger("alert")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
        log.propagate = False
    try:
        flush(settings, log, timeout_s=10.0)
    except Exception as e:  # noqa: BLE001 - delivery is retried by the workers later
        print(f"alert queued, immediate delivery failed ({type(e).__name__})", file=sys.stderr)
