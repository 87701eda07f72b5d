"""Telegram commands: ``/status``, ``/positions``, ``/pnl``, ``/balance``, ``/profit``, ``/daily``, ``/weekly``,
``/trades``, ``/performance``, ``/count``, ``/health``, ``/explain``, ``/pause``, ``/resume``, ``/stopentry``,
``/startentry``, ``/forceexit``, ``/reload``, ``/version``, ``/help`` (the read-only answers are in
:mod:`tracer.notify.answers`, the controls, shared with the web cockpit, in :mod:`tracer.notify.controls`).

Only one process may poll a bot token (Telegram answers 409 Conflict to a second ``getUpdates``), so
commands are served by one listener process (``scripts/telegram_listener.py``, started by the start
script) that acts on the agents through the shared DB: ``/pause`` and ``/resume`` write the
``controls`` table (:meth:`Store.set_paused`), which each agent reads every cycle (a paused agent
opens nothing new and still manages its exits).

Contract of :class:`CommandListener`:

- Only messages from ``TB_TELEGRAM_CHAT_ID`` (or the supergroup that group was upgraded to:
  :func:`tracer.notify.outbox.telegram_chat_ids`) are obeyed; any other chat is ignored (nothing changes,
  no reply) and logged with its chat id.
- Within that chat, only senders in ``TB_TELEGRAM_ALLOWED_USER_IDS`` are obeyed (unset: only the user
  whose private chat it is, so in a group nobody until the list is set); a forwarded message (its author
  is someone else) and a command older than ``TB_TELEGRAM_COMMAND_MAX_AGE_S`` (queued while the
  listener was down) are refused too. Each refusal is logged (``telegram_command_refused``) and changes
  nothing; the offset still moves past it.
- A command that changes state (:data:`WRITES`: ``/pause``, ``/forceexit`` ...) is handled in one DB transaction
  together with its reply and the new ``getUpdates`` offset (kept in ``notify_state``), so a restart neither loses
  nor repeats it. The other commands only read: they are answered before the transaction that stores the reply and
  the offset, so ``/health``'s network probes never hold the DB write lock (the agents write meanwhile).
- A command that raises is answered with a short error (no traceback, nothing secret) and logged
  (``telegram_command_error``); what it wrote is rolled back, and the offset still moves past it, so the commands
  behind it are obeyed.
- A command addressed to another bot (``/startentry@other_bot``, Telegram's way to name the bot in a group) is
  ignored and logged, as python-telegram-bot's ``CommandHandler`` does: the suffix must be this bot's username
  (``getMe``, asked once), in any case.
- Update ids: after a week without updates Telegram picks the next update id at random, maybe below the stored
  offset (such an update would never be returned, and the call with that offset confirms it). The offset's time
  is kept (``notify_state.updated_at``); once it is :data:`QUIET_AFTER` old the listener polls without an offset,
  and the ``(chat id, message id)`` of each handled message, written in the command's transaction
  (:data:`HANDLED_KEY`), keeps a message from being obeyed twice.
- Replies go through the outbox (channel ``telegram``, kind ``command_reply``), so they are tracked,
  split, retried and redacted like every other message.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from tracer.store import Store
from tracer.logs import kv
from tracer.notify import answers, controls, stats
from tracer.notify.format import redact
from tracer.notify.outbox import telegram_chat_ids
from tracer.models import AGENTS

KNOWN_AGENTS = AGENTS
OFFSET_KEY = "telegram_offset"
HANDLED_KEY = "telegram_handled"      # the (chat id, message id) of the last HANDLED_KEEP messages handled
HANDLED_KEEP = 500                    # Telegram keeps an update 24 h at most: far more than are ever pending
# a week without updates and Telegram picks the next update id at random: poll without an offset a day before
# that (updates are kept 24 h at most, so one handled late still counts from within the week)
QUIET_AFTER = timedelta(days=6)

HELP = """Tracer Bullet commands:
/status - each agent: state, cycle, clock, equity, open positions, paused or not, today's trades
/positions - open positions of each agent
/pnl - realized P&L, trades and win rate (today and in total)
/balance - equity, cash, starting capital, realized P&L and fees of each agent
/profit [days] - P&L, trades, win rate and mean return (all time, or the last N days)
/daily [n] - P&L of each of the last n days (default 7)
/weekly [n] - P&L of each of the last n weeks (default 4)
/trades [n] - the last n closed trades (default 10)
/performance - P&L per symbol
/count - open positions and today's entries of each agent
/health - the health checks, and the last operator requests
/explain ID - the decision trail of an order (client or numeric id)
/pause [hybrid|futures|all] - stop new entries (exits are still managed); default all
/resume [hybrid|futures|all] - allow new entries again; default all
/stopentry [hybrid|futures|all] - same as /pause: no new entries, exits still managed
/startentry [hybrid|futures|all] - same as /resume
/forceexit SYMBOL|all - close a position at the next cycle (asks for confirmation first)
/reload [hybrid|futures|all] - read the configuration and promoted parameters again at the next cycle
/version - version, DB schema and commit
/help - this text"""

CONFIRM_S = 60.0            # /forceexit X confirm must follow /forceexit X within this many seconds
CONFIRM_KEY = "forceexit_confirm:"


@dataclass(frozen=True)
class Command:
    name: str                  # without the slash, lower case; "" when the text is not a command
    args: tuple[str, ...]
    bot: str = ""              # the bot it is addressed to (``/cmd@bot``), as written; "" when none


def parse_command(text: str) -> Command:
    """``"/Pause@MyBot futures"`` -> ``Command("pause", ("futures",), "MyBot")``."""
    words = (text or "").strip().split()
    if not words or not words[0].startswith("/"):
        return Command("", tuple(words))
    name, _, bot = words[0][1:].partition("@")
    return Command(name.lower(), tuple(w.lower() for w in words[1:]), bot)


def _targets(args: Sequence[str]) -> list[str] | None:
    if not args or args[0] in ("all", "both"):
        return list(KNOWN_AGENTS)
    if args[0] in KNOWN_AGENTS:
        return [args[0]]
    return None


def _agents(store: Store) -> list[str]:
    return sorted(set(stats.agents(store)) | set(KNOWN_AGENTS))


def _money(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.2f}"


def status_text(store: Store) -> str:
    lines = ["Status"]
    for a in _agents(store):
        st = stats.agent_status(store, a)
        if st.cycle is None:
            lines.append(f"{a}: no cycle yet" + (" (PAUSED)" if st.paused else ""))
            continue
        today = st.today
        lines.append(f"{a}: {st.state}{' PAUSED' if st.paused else ''}, cycle {st.cycle}, clock "
                     f"{st.clock:%Y-%m-%d %H:%M} UTC, equity {_money(st.equity)}, cash {_money(st.cash)}, "
                     f"open {st.open_positions}, today {today.trades if today else 0} closed trades "
                     f"({(today.pnl if today else 0):+,.2f})"
                     + (f", heartbeat {st.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC" if st.heartbeat_at else ""))
    return "\n".join(lines)


def positions_text(store: Store) -> str:
    lines = ["Open positions"]
    for a in _agents(store):
        ps = stats.open_positions(store, a)
        if not ps:
            lines.append(f"{a}: none")
            continue
        for p in ps:
            lev = f" {p.leverage:g}x" if p.leverage != 1 else ""
            liq = f", liq {p.liquidation_price:.6g}" if p.liquidation_price else ""
            lines.append(f"{a}: {p.side.value}{lev} {p.qty:.6g} {p.symbol} @ {p.entry_price:.6g}, stop "
                         f"{p.stop_loss:.6g}, target {p.take_profit:.6g}{liq}, since {p.opened_at:%Y-%m-%d %H:%M}")
    return "\n".join(lines)


def pnl_text(store: Store) -> str:
    lines = ["P&L"]
    for a in _agents(store):
        st = stats.agent_status(store, a)
        wr = f"{st.total_wins / st.total_trades:.0%}" if st.total_trades else "n/a"
        t = st.today
        today = (f"today ({t.day}) {t.pnl:+,.2f} on {t.trades} trades" if t else "today: no cycle yet")
        lines.append(f"{a}: total {st.total_pnl:+,.2f} on {st.total_trades} trades, win rate {wr}; {today}")
    return "\n".join(lines)


def force_exit_text(store: Store, args: Sequence[str], who: str, now: datetime | None = None) -> str:
    """``/forceexit X`` asks for confirmation; ``/forceexit X confirm`` within :data:`CONFIRM_S` queues it."""
    if not args:
        return "usage: /forceexit SYMBOL|all (then /forceexit SYMBOL confirm)"
    target = args[0].upper() if args[0].lower() != "all" else "all"
    now = now or datetime.now(timezone.utc)
    key = CONFIRM_KEY + target
    if len(args) > 1 and args[1] == "confirm":
        asked = store.notify_state(key)
        store.set_notify_state(key, "")
        try:
            age = (now - datetime.fromisoformat(asked)).total_seconds() if asked else None
        except ValueError:
            age = None
        if age is None or not 0 <= age <= CONFIRM_S:
            return f"no /forceexit {target} to confirm in the last {CONFIRM_S:.0f} s: send /forceexit {target} first"
        return controls.force_exit(store, target, who).message
    held = controls.holders(store, target)
    if not held:
        return f"no open position in {target}"
    store.set_notify_state(key, now.isoformat())
    what = "; ".join(f"{a}: {', '.join(syms)}" for a, syms in held.items())
    return f"⚠️ force exit {what}? Send /forceexit {target.lower()} confirm within {CONFIRM_S:.0f} s"


_READ = {"status": status_text, "positions": positions_text, "pnl": pnl_text, "balance": answers.balance_text,
         "performance": answers.performance_text, "count": answers.count_text}
_READ_ARGS = {"profit": answers.profit_text, "daily": answers.daily_text, "weekly": answers.weekly_text,
              "trades": answers.trades_text, "explain": answers.explain_text}
_ENTRIES = {"pause": False, "stopentry": False, "resume": True, "startentry": True}
# the commands that write the DB: each runs in one transaction with the new getUpdates offset (the others are answered
# before the listener's transaction, so /health's network probes never hold the DB write lock)
WRITES = frozenset({"forceexit", "reload", *_ENTRIES})


def handle_command(store: Store, text: str, who: str = "telegram", settings: Any = None) -> str | None:
    """Act on one command text from the authorised chat and return the reply (``None``: not a
    command, no reply). The controls write ``controls`` / ``control_requests`` (inside the caller's
    transaction when there is one)."""
    cmd = parse_command(text)
    if not cmd.name:
        return None
    if cmd.name in ("help", "start"):
        return HELP
    if cmd.name in _READ:
        return _READ[cmd.name](store)
    if cmd.name in _READ_ARGS:
        # /explain keeps the id's case (client order ids are case-sensitive)
        args = tuple(text.split()[1:]) if cmd.name == "explain" else cmd.args
        return _READ_ARGS[cmd.name](store, args)
    if cmd.name == "health":
        extra = answers.requests_text(store)
        return answers.health_text(settings) + (f"\n\n{extra}" if extra else "")
    if cmd.name == "version":
        return answers.version_text()
    if cmd.name == "forceexit":
        return force_exit_text(store, cmd.args, who)
    if cmd.name in _ENTRIES or cmd.name == "reload":
        targets = _targets(cmd.args)
        if targets is None:
            return f"unknown agent {cmd.args[0]!r}: use hybrid, futures or all"
        if cmd.name == "reload":
            return controls.reload(store, targets, who).message
        return controls.set_entries(store, targets, _ENTRIES[cmd.name], who, cmd.name).message
    return f"unknown command /{cmd.name}\n\n{HELP}"


def allowed_user_ids(settings: Any) -> set[int]:
    """The user ids whose commands are obeyed: the configured list, else the private chat's own user."""
    ids = {int(x) for x in str(settings.telegram_allowed_user_ids).split(",") if x.strip()}
    if ids:
        return ids
    chat = str(settings.telegram_chat_id).strip()
    return {int(chat)} if chat.isdigit() else set()      # a private chat's id is its user's id; groups are < 0


def refusal(settings: Any, u: Any, now: datetime) -> str | None:
    """Why the update ``u`` from the configured chat must not be obeyed (None: obey it)."""
    if u.user_id is None or u.user_id not in allowed_user_ids(settings):
        return "sender not in TB_TELEGRAM_ALLOWED_USER_IDS"
    if u.forwarded:
        return "forwarded message (its author is not the sender)"
    if u.sent_at is not None:
        age = (now - u.sent_at).total_seconds()
        if age > settings.telegram_command_max_age_s:
            return f"sent {age:.0f}s ago, older than TB_TELEGRAM_COMMAND_MAX_AGE_S={settings.telegram_command_max_age_s:g}"
    return None


class CommandListener:
    """Polls ``getUpdates`` through a :class:`~tracer.notify.telegram.TelegramClient` and obeys the
    configured chat (see the module docstring)."""

    def __init__(self, store: Store, client: Any, settings: Any, log: logging.Logger,
                 on_reply: Any = None):
        self.store = store
        self.client = client
        self.s = settings
        self.log = log
        self.on_reply = on_reply           # called after a reply is queued (wakes the outbox worker)
        self._bot_username: str | None = None
        self._quiet = False                 # polling without an offset (see poll_once)

    def poll_once(self, timeout_s: int = 0) -> int:
        """Fetch and handle the updates after the stored offset (every pending one when the offset is
        :data:`QUIET_AFTER` old: the ids may have jumped below it); returns how many were handled."""
        raw = self.store.notify_state(OFFSET_KEY)
        offset = int(raw) if raw is not None else None
        at = self.store.notify_state_at(OFFSET_KEY)
        quiet = offset is not None and (at is None or datetime.now(timezone.utc) - at >= QUIET_AFTER)
        if quiet and not self._quiet:          # logged once a quiet spell, not at every long poll of it
            self.log.info(kv("telegram_poll_without_offset", offset=offset, offset_at=at.isoformat() if at else None,
                             reason="no update for 6 days: the next update id may be below the offset"))
        self._quiet = quiet
        if quiet:
            offset = None
        ups = self.client.updates(offset, timeout_s)
        replied = False
        for u in ups:
            replied = self._handle_update(u) or replied
        if replied and self.on_reply is not None:
            self.on_reply()
        return len(ups)

    def _handle_update(self, u: Any) -> bool:
        """Handle one update and move the offset past it; True when a reply was queued.

        A command that changes state (:data:`WRITES`) runs in one transaction with its reply and the new offset, so
        a restart neither loses nor repeats it. Any other command is answered *before* the transaction (``/health``
        probes the network: the DB write lock is not held meanwhile), then its reply and the offset are written. A
        command that raises is answered with a short error and logged; its writes are rolled back and the offset
        still moves past it (in a transaction of its own), so the commands behind it are obeyed."""
        why = refusal(self.s, u, datetime.now(timezone.utc))
        if str(u.chat_id) not in telegram_chat_ids(self.store, self.s):
            self.log.warning(kv("telegram_command_ignored", chat_id=u.chat_id, user=u.user,
                                reason="not the configured chat"))
            return self._record(u, None)
        if self._seen(u):
            self.log.info(kv("telegram_update_seen_again", chat_id=u.chat_id, message_id=u.message_id,
                             update_id=u.update_id))
            return self._record(u, None)
        cmd = parse_command(u.text)
        name = cmd.name
        if cmd.bot and cmd.bot.lower() != self._username().lower():
            self.log.info(kv("telegram_command_ignored", chat_id=u.chat_id, user=u.user, text=u.text[:100],
                             reason=f"addressed to @{cmd.bot}, not this bot"))
            return self._record(u, None)
        if why is not None and name:
            self.log.warning(kv("telegram_command_refused", chat_id=u.chat_id, user=u.user,
                                user_id=u.user_id, text=u.text[:100], reason=why))
            return self._record(u, None)
        if name not in WRITES:
            try:
                reply = self._run(u)             # outside any transaction: reads, and /health's network probes
            except Exception as e:
                reply = self._failed(u, name, e)
            return self._record(u, reply)
        failure: Exception | None = None
        try:
            with self.store.transaction():
                try:
                    reply = self._run(u)
                except Exception as e:
                    failure = e
                    raise                        # rolls back what the command wrote
                return self._record(u, reply)    # joins the transaction: the effect, its reply and the offset
        except Exception:
            if failure is None:
                raise                            # the DB itself failed: run_listener retries the update
            return self._record(u, self._failed(u, name, failure))

    def _username(self) -> str:
        if self._bot_username is None:
            self._bot_username = self.client.username()
        return self._bot_username

    def _handled(self) -> list[str]:
        return list(json.loads(self.store.notify_state(HANDLED_KEY) or "[]"))

    def _seen(self, u: Any) -> bool:
        return u.message_id is not None and f"{u.chat_id}:{u.message_id}" in self._handled()

    def _run(self, u: Any) -> str | None:
        reply = handle_command(self.store, u.text, who=f"telegram:{u.user}", settings=self.s)
        self.log.info(kv("telegram_command", user=u.user, text=u.text[:100], handled=reply is not None))
        return reply

    def _failed(self, u: Any, name: str, e: Exception) -> str:
        """Log a command's error (redacted, no traceback) and return the operator's short reply."""
        self.log.error(kv("telegram_command_error", user=u.user, text=u.text[:100],
                          error=redact(f"{type(e).__name__}: {e}", self.s.secret_values())))
        return f"/{name} failed ({type(e).__name__}); nothing was changed. The error is in the listener's log."

    def _record(self, u: Any, reply: str | None) -> bool:
        """Queue ``reply`` (if any) and store the offset past ``u``, in one short transaction (or the caller's)."""
        with self.store.transaction():
            if reply is not None:
                self.store.enqueue_notification("telegram", "command_reply", redact(reply, self.s.secret_values()),
                                                None)
            self.store.set_notify_state(OFFSET_KEY, str(u.update_id + 1))
            if u.message_id is not None:
                key = f"{u.chat_id}:{u.message_id}"
                handled = [k for k in self._handled() if k != key]
                self.store.set_notify_state(HANDLED_KEY, json.dumps((handled + [key])[-HANDLED_KEEP:]))
        return reply is not None


def run_listener(settings: Any, log: logging.Logger, stop: threading.Event, client_factory: Any = None,
                 error_backoff_s: float = 5.0, conflict_backoff_s: float = 30.0) -> int:
    """The listener process's loop: outbox workers for every remote channel (so alerts go out even
    while the agents are down) and, until ``stop``, command polling. Returns an exit code."""
    from telegram.error import Conflict, InvalidToken

    from tracer.notify.outbox import remote_channels
    from tracer.notify.telegram import TelegramClient
    from tracer.notify.worker import start_workers, stop_workers

    if "telegram" not in remote_channels(settings):
        log.error(kv("telegram_listener", error="Telegram is off: set TB_TELEGRAM_BOT_TOKEN and TB_TELEGRAM_CHAT_ID"))
        return 2
    make = client_factory or (lambda: TelegramClient(settings.telegram_bot_token, settings.telegram_chat_id,
                                                     settings.telegram_base_url, settings.notify_timeout_s))
    store = Store(settings.db_path)          # creates or migrates the DB before the worker threads open it
    workers = start_workers(settings, log)
    tg = next((w for w in workers if w.channel == "telegram"), None)
    client = make()
    listener = CommandListener(store, client, settings, log, on_reply=tg.wake if tg else None)
    log.info(kv("telegram_listener_started", chat_id=settings.telegram_chat_id))
    rc = 0
    try:
        while not stop.is_set():
            try:
                listener.poll_once(settings.telegram_poll_timeout_s)
            except Conflict:
                log.error(kv("telegram_conflict", error="another process polls this bot token (409); "
                                                        "run one listener per token"))
                stop.wait(conflict_backoff_s)
            except InvalidToken:
                log.error(kv("telegram_listener", error="the bot token was rejected (401/404); stopping"))
                rc = 2
                break
            except Exception as e:
                log.error(kv("telegram_poll_error", error=redact(f"{type(e).__name__}: {e}",
                                                                  settings.secret_values())))
                stop.wait(error_backoff_s)
    finally:
        client.close()
        store.close()
        stop_workers(workers)
    log.info(kv("telegram_listener_stopped"))
    return rc
