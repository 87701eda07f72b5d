"""Read-only queries that feed the notification texts and the Telegram commands.

Days are UTC days of the agent's market clock (the replay clock offline, the wall clock live): the
"day" of an agent is the date of its last committed cycle.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from tracer.store import Store, parse_iso
from tracer.models import Position


@dataclass(frozen=True)
class DayStats:
    """One agent's UTC day: closed trades, wins, realized P&L, equity at its start and end."""
    agent: str
    day: date
    trades: int
    wins: int
    pnl: float
    start_equity: float | None
    end_equity: float | None

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.trades if self.trades else None

    @property
    def equity_change(self) -> float | None:
        if self.start_equity is None or self.end_equity is None:
            return None
        return self.end_equity - self.start_equity


@dataclass(frozen=True)
class AgentStatus:
    agent: str
    cycle: int | None
    clock: datetime | None
    state: str                     # heartbeat status: running / stopped / ...
    heartbeat_at: datetime | None
    equity: float | None
    cash: float | None
    open_positions: int
    paused: bool
    total_trades: int
    total_pnl: float
    total_wins: int
    today: DayStats | None


def _day_start(d: date) -> datetime:
    return datetime.combine(d, time(0), tzinfo=timezone.utc)


def equity_before(store: Store, agent: str, t: datetime) -> float | None:
    """Equity after the last cycle whose clock is before ``t`` (else the initial capital, if known)."""
    eq = store.equity_before(agent, t)
    if eq is not None:
        return eq
    acct = store.account(agent)
    return float(acct["initial_capital"]) if acct else None


def day_stats(store: Store, agent: str, day: date) -> DayStats:
    start, end = _day_start(day), _day_start(day + timedelta(days=1))
    n, pnl, wins = store.trade_stats(agent, start, end)
    return DayStats(agent, day, n, wins, pnl, equity_before(store, agent, start), equity_before(store, agent, end))


def agents(store: Store) -> list[str]:
    """Agents the DB knows (heartbeats or accounts), sorted."""
    return store.known_agents()


def agent_status(store: Store, agent: str) -> AgentStatus:
    hb = store.heartbeat_of(agent)
    run = store.last_run(agent)
    acct = store.account(agent)
    n_open = store.open_position_count(agent)
    n, pnl, wins = store.trade_stats(agent)
    clock = parse_iso(run["clock"]) if run else None
    return AgentStatus(agent=agent, cycle=int(run["cycle"]) if run else None, clock=clock,
                       state=hb["status"] if hb else "unknown", heartbeat_at=parse_iso(hb["ts"]) if hb else None,
                       equity=run["equity"] if run else None, cash=acct["cash"] if acct else None,
                       open_positions=int(n_open), paused=store.is_paused(agent), total_trades=n, total_pnl=pnl,
                       total_wins=wins, today=day_stats(store, agent, clock.date()) if clock else None)


def open_positions(store: Store, agent: str) -> list[Position]:
    return store.open_positions(agent)
