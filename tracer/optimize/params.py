"""Parameter sets: the search space, the active (promoted) set, proposals, guard rails, promotion and rollback.

Where parameters live:

- ``config/proposed_params.json`` (``TB_PROPOSED_PARAMS_PATH``): written by ``tracer optimize``. Never applied
  by itself.
- ``config/active_params.json`` (``TB_ACTIVE_PARAMS_PATH``): the promoted set of each agent. ``load_settings``
  overlays it **under** the variables set in the environment or ``.env`` and **above** the profile and the
  defaults (precedence: environment > .env > active set > profile > default). Agents read it when they start,
  so a promotion never changes a running agent: it takes effect at the next (re)start.
- the ``param_promotions`` table: every promotion and rollback with the set before it (rollback's source).

Guard rails (:func:`guard_rails`), checked by ``tracer params promote`` (``--force`` overrides them) and by
``tracer params auto-apply`` (never overridden): every parameter inside its search range; each change at
most ``TB_AUTO_APPLY_MAX_CHANGE`` of that range; the out-of-sample objective better than the current set's
on the same window by ``TB_AUTO_APPLY_MIN_IMPROVEMENT``; the proposal made against the parameters in force
now and on this code version. Auto-apply also needs ``TB_AUTO_APPLY_ENABLED`` and no ``TB_AUTO_APPLY_KILL``.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from tracer.logs import private_write_text

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Param:
    env: str
    kind: str          # float or int
    lo: float
    hi: float
    step: float

    @property
    def width(self) -> float:
        return self.hi - self.lo


def _p(env: str, lo: float, hi: float, step: float, kind: str = "float") -> Param:
    return Param(env, kind, lo, hi, step)


# What the optimiser may tune, per agent. The signal gates are shared by both agents (signal parity: the
# same evaluate() with the same parameters), so they belong to the hybrid agent's space only; promoting a
# hybrid set changes the futures agent's entry gates too. The futures space has only TB_FUTURES_* variables.
SPACES: dict[str, tuple[Param, ...]] = {
    "hybrid": (
        _p("TB_MIN_SIGNAL_QUALITY", 0.0, 6.0, 0.25),
        _p("TB_MIN_CONVICTION_SCORE", 1.0, 7.0, 0.25),
        _p("TB_BEAR_QUALITY_PENALTY", 0.0, 3.0, 0.25),
        _p("TB_EXTREME_VOL_QUALITY_PENALTY", 0.0, 4.0, 0.25),
        _p("TB_STOP_ATR_MULT", 1.0, 4.0, 0.25),
        _p("TB_TAKE_PROFIT_ATR_MULT", 1.5, 8.0, 0.25),
        _p("TB_TRAIL_PCT", 0.01, 0.12, 0.005),
        _p("TB_MAX_HOLD_H", 6.0, 96.0, 6.0),
        _p("TB_MAX_POSITION_PCT", 0.02, 0.20, 0.01),
        _p("TB_MAX_TRADES_PER_DAY", 2, 12, 1, "int"),
    ),
    "futures": (
        _p("TB_FUTURES_COUNTER_REGIME_QUALITY", 3.0, 9.0, 0.25),
        _p("TB_FUTURES_STOP_ATR_MULT", 1.0, 4.0, 0.25),
        _p("TB_FUTURES_TAKE_PROFIT_ATR_MULT", 1.5, 6.0, 0.25),
        _p("TB_FUTURES_TRAIL_PCT", 0.01, 0.10, 0.005),
        _p("TB_FUTURES_MAX_HOLD_H", 4.0, 72.0, 4.0),
        _p("TB_FUTURES_RISK_PER_TRADE", 0.002, 0.02, 0.001),
        _p("TB_FUTURES_MAX_LEVERAGE", 1.0, 10.0, 1.0),
        _p("TB_FUTURES_MAX_TRADES_PER_DAY", 2, 12, 1, "int"),
        _p("TB_FUTURES_COOLDOWN_H", 0.0, 12.0, 1.0),
    ),
}

# The trend profile's space: the parameters the trend model uses, with bounds that contain its defaults (so a
# proposal can move from them). Its window and band are signal parameters (hybrid space, both agents), the
# window at most the profile's 600-bar look-back; a take-profit of 100 ATR is "none", the trend's exit.
TREND_SPACES: dict[str, tuple[Param, ...]] = {
    "hybrid": (
        _p("TB_TREND_WINDOW_H", 120.0, 600.0, 24.0),
        _p("TB_MIN_DIRECTION_SCORE", 0.0, 0.4, 0.02),
        _p("TB_MIN_SIGNAL_QUALITY", 0.0, 6.0, 0.25),
        _p("TB_MIN_CONVICTION_SCORE", 1.0, 7.0, 0.25),
        _p("TB_STOP_ATR_MULT", 2.0, 16.0, 0.5),
        _p("TB_TAKE_PROFIT_ATR_MULT", 4.0, 100.0, 4.0),
        _p("TB_TRAIL_PCT", 0.0, 0.15, 0.01),
        _p("TB_MAX_POSITION_PCT", 0.02, 0.20, 0.01),
        _p("TB_MAX_TRADES_PER_DAY", 2, 12, 1, "int"),
    ),
    "futures": (
        _p("TB_FUTURES_COUNTER_REGIME_QUALITY", 3.0, 9.0, 0.25),
        _p("TB_FUTURES_STOP_ATR_MULT", 2.0, 16.0, 0.5),
        _p("TB_FUTURES_TAKE_PROFIT_ATR_MULT", 4.0, 100.0, 4.0),
        _p("TB_FUTURES_TRAIL_PCT", 0.0, 0.15, 0.01),
        _p("TB_FUTURES_RISK_PER_TRADE", 0.002, 0.02, 0.001),
        _p("TB_FUTURES_MAX_LEVERAGE", 1.0, 10.0, 1.0),
        _p("TB_FUTURES_MAX_TRADES_PER_DAY", 2, 12, 1, "int"),
        _p("TB_FUTURES_COOLDOWN_H", 0.0, 48.0, 4.0),
    ),
}
SPACES_BY_PROFILE = {"trend": TREND_SPACES}     # any other profile (phase1c, conservative): the seed's SPACES
AGENTS = tuple(SPACES)


def space(agent: str, profile: str | None = None) -> dict[str, Param]:
    """The agent's search space under ``profile`` (the trend profile has its own; the others the seed's)."""
    if agent not in SPACES:
        raise ValueError(f"unknown agent {agent!r} (hybrid or futures)")
    return {p.env: p for p in SPACES_BY_PROFILE.get(profile or "", SPACES)[agent]}


def field_of(env: str) -> str:
    from tracer.config import Settings
    for f in fields(Settings):
        if f.metadata["env"] == env:
            return f.name
    raise KeyError(env)


def current_values(s: Any, agent: str) -> dict[str, float]:
    """The values in force now (whatever their source) of the agent's tunable parameters."""
    out: dict[str, float] = {}
    for env, p in space(agent, s.profile).items():
        v = getattr(s, field_of(env))
        out[env] = int(v) if p.kind == "int" else float(v)
    return out


def code_version() -> str:
    """``git rev-parse HEAD`` of the checkout, with ``-dirty`` when tracked files differ; ``unknown`` without git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"


# --- files -------------------------------------------------------------------------------------
def read_json(path: str | Path) -> dict[str, Any] | None:
    p = Path(path)
    if not p.is_file():
        return None
    return json.loads(p.read_text())


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Atomic write (temp file + rename), sorted keys, so a reader never sees half a file; the file is user-only
    (0600) whatever the umask, as the DB and the logs (a proposal names its storage and its overrides)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp.{os.getpid()}")
    tmp.unlink(missing_ok=True)           # a leftover keeps its mode: the new file is created user-only
    private_write_text(tmp, json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, p)


def active_sets(path: str | Path) -> dict[str, dict[str, Any]]:
    """agent -> {TB_NAME: value} of the active (promoted) file; {} when there is none."""
    data = read_json(path) or {}
    return {a: dict(v.get("params", {})) for a, v in (data.get("agents") or {}).items()}


from tracer.config import active_overlay  # noqa: E402,F401  (the overlay is read with the configuration)


def write_active(path: str | Path, agent: str, params: Mapping[str, Any], promotion_id: int | None,
                 when: str) -> None:
    data = read_json(path) or {"version": 1, "agents": {}}
    agents = data.setdefault("agents", {})
    if params:
        agents[agent] = {"params": dict(params), "promotion_id": promotion_id, "since": when}
    else:
        agents.pop(agent, None)
    write_json(path, data)


def shadowed(agent: str, environ: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env"
             ) -> list[str]:
    """The agent's tunable variables set in the environment or ``.env``: a promoted value for them has no effect."""
    from dotenv import dotenv_values
    names = {p.env for sp in (SPACES, *SPACES_BY_PROFILE.values()) for p in sp[agent]} if agent in SPACES else set()
    env = dict(os.environ if environ is None else environ)
    if dotenv_path is not None and Path(dotenv_path).is_file():
        env.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    return sorted(n for n in names if n in env)


# --- guard rails ---------------------------------------------------------------------------------
def guard_rails(proposal: Mapping[str, Any], current: Mapping[str, float], s: Any,
                head: str | None = None) -> list[str]:
    """Reasons to refuse ``proposal`` given the ``current`` values of its agent's parameters ([] = accept)."""
    reasons: list[str] = []
    agent = proposal.get("agent")
    if agent not in SPACES:
        return [f"proposal for unknown agent {agent!r}"]
    sp = space(agent, s.profile)
    params = proposal.get("params") or {}
    made_under = proposal.get("profile")
    if made_under is not None and made_under != s.profile:
        reasons.append(f"the proposal was made under profile {made_under}, the agents run {s.profile} (TB_PROFILE)")
    if not params:
        reasons.append("the proposal has no parameters")
    for name, v in sorted(params.items()):
        p = sp.get(name)
        if p is None:
            reasons.append(f"{name}: not a tunable parameter of the {agent} agent (profile {s.profile})")
            continue
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (p.lo <= v <= p.hi):
            reasons.append(f"{name}={v!r}: outside its bound [{p.lo:g}, {p.hi:g}]")
            continue
        cur = current.get(name)
        if cur is not None:
            limit = s.auto_apply_max_change * p.width
            if abs(v - cur) > limit + 1e-12:
                reasons.append(f"{name}: change {cur:g} -> {v:g} ({abs(v - cur):g}) exceeds its bound {limit:g} "
                               f"(TB_AUTO_APPLY_MAX_CHANGE={s.auto_apply_max_change:g} of the range "
                               f"[{p.lo:g}, {p.hi:g}])")
    obj = (proposal.get("metrics") or {}).get("objective") or {}
    oos, cur_oos = obj.get("out_of_sample"), obj.get("current_out_of_sample")
    if oos is None or cur_oos is None:
        reasons.append("the proposal has no out-of-sample comparison with the current set")
    elif oos < cur_oos + s.auto_apply_min_improvement:
        reasons.append(f"out of sample the proposal is not better than the current set: objective {oos:.4f} "
                       f"vs {cur_oos:.4f} + margin {s.auto_apply_min_improvement:g} (TB_AUTO_APPLY_MIN_IMPROVEMENT)")
    base = proposal.get("current") or {}
    moved = [k for k, v in sorted(base.items()) if k in current and abs(float(current[k]) - float(v)) > 1e-12]
    if moved:
        reasons.append("the parameters in force changed since the proposal was made (its baseline is stale): "
                       + ", ".join(f"{k} {base[k]:g} -> now {current[k]:g}" for k in moved))
    if head is not None and proposal.get("code_version") not in (None, head):
        reasons.append(f"the proposal was made on code version {proposal.get('code_version')}, this is {head}")
    return reasons


# --- promotion and rollback ----------------------------------------------------------------------
@dataclass
class Outcome:
    ok: bool
    message: str
    reasons: list[str]
    promotion_id: int | None = None


def _alert(store, s, kind: str, text: str, agent: str) -> None:
    from tracer.notify.outbox import enqueue
    enqueue(store, s, kind, text, agent)


def _fmt(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in sorted(params.items()))


def promote(store, s, proposal: Mapping[str, Any], *, actor: str, force: bool = False, auto: bool = False,
            current: Mapping[str, float] | None = None) -> Outcome:
    """Make ``proposal`` the agent's active set, or refuse it with the reasons. Recorded and alerted."""
    agent = proposal.get("agent")
    if auto:
        if s.auto_apply_kill:
            return _refused(store, s, agent, ["kill switch TB_AUTO_APPLY_KILL is on"], auto)
        if not s.auto_apply_enabled:     # the normal case: the proposal alert already went out
            return _refused(store, s, agent, ["TB_AUTO_APPLY_ENABLED is off"], auto=False)
    if agent not in SPACES:
        return Outcome(False, f"refused: unknown agent {agent!r}", [f"unknown agent {agent!r}"])
    cur = dict(current) if current is not None else current_values(s, agent)
    reasons = guard_rails(proposal, cur, s, head=code_version())
    if reasons and (auto or not force):
        return _refused(store, s, agent, reasons, auto)
    from tracer.store import iso, utcnow
    path = s.active_params_path
    previous = active_sets(path).get(agent, {})
    new = {k: v for k, v in sorted(proposal["params"].items())}
    action = "auto" if auto else "promote"
    note = ("forced over: " + "; ".join(reasons)) if reasons else "guard rails passed"
    summary = _metrics_line(proposal)
    with store.transaction():
        pid = store.insert_promotion(agent, action, new, previous, dict(proposal), proposal.get("code_version"),
                                     actor, note)
        _alert(store, s, "params_promoted",
               f"parameters {'auto-' if auto else ''}promoted for {agent} (#{pid}, by {actor}): {_fmt(new)}. "
               f"{summary}. Takes effect when the agent restarts. Undo: tracer params rollback --agent {agent}",
               agent)
        write_active(path, agent, new, pid, iso(utcnow()))
    return Outcome(True, f"promoted #{pid} for {agent}: {_fmt(new)} ({note}); takes effect at the agent's next "
                         f"start (./start_trading_system.sh --restart)", reasons, pid)


def _refused(store, s, agent, reasons: list[str], auto: bool) -> Outcome:
    if auto:
        with store.transaction():
            _alert(store, s, "params_refused", f"automatic promotion refused for {agent}: " + "; ".join(reasons),
                   agent or "optimize")
    return Outcome(False, "refused: " + "; ".join(reasons), reasons)


def rollback(store, s, agent: str, *, actor: str) -> Outcome:
    """Restore the set that was active before the agent's latest (not yet rolled back) promotion."""
    from tracer.store import iso, utcnow
    row = store.last_live_promotion(agent)
    if row is None:
        return Outcome(False, f"nothing to roll back for {agent}", ["no promotion recorded"])
    previous = json.loads(row["previous_json"])
    current = active_sets(s.active_params_path).get(agent, {})
    with store.transaction():
        store.mark_rolled_back(row["id"])
        pid = store.insert_promotion(agent, "rollback", previous, current, {"undoes": row["id"]}, code_version(),
                                     actor, f"rollback of #{row['id']}")
        _alert(store, s, "params_rollback",
               f"parameters rolled back for {agent} (#{pid} undoes #{row['id']}, by {actor}): "
               f"{_fmt(previous) if previous else 'no promoted set (settings and profile only)'}. "
               f"Takes effect when the agent restarts.", agent)
        write_active(s.active_params_path, agent, previous, pid if previous else None, iso(utcnow()))
    return Outcome(True, f"rolled back #{row['id']} for {agent}: now "
                         f"{_fmt(previous) if previous else 'no promoted set'}", [], pid)


def _metrics_line(proposal: Mapping[str, Any]) -> str:
    obj = (proposal.get("metrics") or {}).get("objective") or {}
    m = proposal.get("metrics") or {}
    ins, oos, cur = m.get("in_sample") or {}, m.get("out_of_sample") or {}, m.get("current_out_of_sample") or {}

    def one(x):
        return (f"return {x.get('total_return', 0):+.2%}, Sharpe {x.get('sharpe', 0):.2f}, "
                f"max DD {x.get('max_drawdown', 0):.2%}, {x.get('trades', 0)} trades")
    if not obj:
        return "no metrics"
    return (f"objective in-sample {obj.get('in_sample', float('nan')):.3f} ({one(ins)}); out-of-sample "
            f"{obj.get('out_of_sample', float('nan')):.3f} ({one(oos)}); current set out-of-sample "
            f"{obj.get('current_out_of_sample', float('nan')):.3f} ({one(cur)})")
