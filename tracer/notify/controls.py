"""The operator's controls, one code path for the Telegram commands and the web cockpit: pause / resume (also
called stop-entry / start-entry: no new entries, exits still managed), force-exit and reload. Each writes the DB
(``controls``, ``control_requests``) inside the caller's transaction when there is one; the agents act on it at
their next cycle (:mod:`tracer.agents.controls`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from tracer.models import AGENTS
from tracer.store import Store


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    agents: tuple[str, ...] = ()
    request_ids: tuple[int, ...] = ()


def resolve_agents(name: str | None) -> list[str] | None:
    """``None``/``all``/``both`` -> every agent; an agent's name -> that one; anything else -> None."""
    if name is None or name.lower() in ("all", "both", ""):
        return list(AGENTS)
    return [name.lower()] if name.lower() in AGENTS else None


def set_entries(store: Store, agents: Sequence[str], allow: bool, actor: str, verb: str = "pause") -> Outcome:
    """Pause (no new entries; open positions still managed) or resume ``agents``."""
    with store.transaction():
        for a in agents:
            store.set_paused(a, not allow, f"{verb} by {actor}")
    names = ", ".join(agents)
    if allow:
        return Outcome(True, f"▶️ resumed {names}: new entries allowed", tuple(agents))
    return Outcome(True, f"⏸ paused {names}: no new entries (open positions are still managed)", tuple(agents))


def holders(store: Store, target: str, agents: Sequence[str] = AGENTS) -> dict[str, list[str]]:
    """The agents with an open position in ``target`` (a symbol, any case, or ``all``) and those symbols."""
    out: dict[str, list[str]] = {}
    for a in agents:
        syms = [p.symbol for p in store.open_positions(a) if target.lower() == "all" or p.symbol.upper() == target.upper()]
        if syms:
            out[a] = syms
    return out


def force_exit(store: Store, target: str, actor: str, agents: Sequence[str] = AGENTS) -> Outcome:
    """Queue a forced exit of ``target`` (a symbol or ``all``) for every agent that holds it now."""
    held = holders(store, target, agents)
    if not held:
        return Outcome(False, f"no open position in {target} ({', '.join(agents)})")
    ids = []
    with store.transaction():
        for a in held:
            ids.append(store.request_control(a, "force_exit", "all" if target.lower() == "all" else target.upper(),
                                             actor))
    what = "; ".join(f"{a}: {', '.join(s)}" for a, s in held.items())
    return Outcome(True, f"🛑 forced exit queued ({what}): sent at each agent's next cycle, reason force_exit",
                   tuple(held), tuple(ids))


def reload(store: Store, agents: Sequence[str], actor: str) -> Outcome:
    """Ask ``agents`` to read their configuration and promoted parameters again at their next cycle."""
    with store.transaction():
        ids = [store.request_control(a, "reload", None, actor) for a in agents]
    return Outcome(True, f"🔄 reload queued for {', '.join(agents)}: done at the next cycle (see /health or the "
                         f"cockpit for the outcome)", tuple(agents), tuple(ids))
