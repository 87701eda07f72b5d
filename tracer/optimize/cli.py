"""``tracer optimize`` and ``tracer params``: options, settings, tables, outputs (registered in tracer/cli.py)."""
from __future__ import annotations

import getpass
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tracer.config import ConfigError, env_names, load_settings
from tracer.models import AGENTS

COMMANDS = ("optimize", "params")


def add_parsers(sub) -> None:
    o = sub.add_parser("optimize", help="walk-forward optimisation of an agent's parameters (Optuna over the "
                                        "backtest); writes a proposal, never applies it")
    o.add_argument("--agent", choices=AGENTS, default="hybrid")
    o.add_argument("--trials", type=int, help="trials per fold (default TB_OPTIMIZE_TRIALS)")
    o.add_argument("--from", dest="start", help="first UTC date/time of the data used (default: start of the data)")
    o.add_argument("--to", dest="end", help="end of the data used, exclusive (default: end of the data)")
    o.add_argument("--train-days", type=float, help="training window (default TB_OPTIMIZE_TRAIN_DAYS)")
    o.add_argument("--test-days", type=float, help="scoring window and roll step (default TB_OPTIMIZE_TEST_DAYS)")
    o.add_argument("--folds", type=int, help="most recent folds used (default TB_OPTIMIZE_MAX_FOLDS)")
    o.add_argument("--symbols", help="comma list (default: the agent's symbols)")
    o.add_argument("--data", help="folder of candles_<interval>_<SYMBOL>.csv files (default: bundled data)")
    o.add_argument("--headlines", help="headlines CSV (default: TB_HEADLINES_PATH, else headlines.csv in the data "
                                       "folder)")
    o.add_argument("--jobs", type=int, default=1, help="worker processes on this machine sharing the storage")
    o.add_argument("--storage", help="Optuna RDB storage URL (default TB_OPTIMIZE_STORAGE, else "
                                     "sqlite:///$TB_STATE_DIR/optuna.db); postgresql://... for several machines")
    o.add_argument("--study", help="study name shared by all workers (default: derived from the inputs)")
    o.add_argument("--seed", type=int, help="sampler seed (default TB_OPTIMIZE_SEED)")
    o.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override one TB_ setting for every run (also the baseline)")
    o.add_argument("--worker", type=int, metavar="ID",
                   help="only run trials (another machine joining the study; ID >= 1, distinct per machine)")
    o.add_argument("--out", help="report folder (default backtests/optimize/<agent>)")
    o.add_argument("--proposal", help="proposal file (default TB_PROPOSED_PARAMS_PATH)")
    o.add_argument("--alert", action="store_true", help="send the proposal summary through the notification outbox")
    o.add_argument("--no-plot", action="store_true", help="skip optimize.png")
    p = sub.add_parser("params", help="show, promote, roll back or auto-apply optimised parameter sets")
    psub = p.add_subparsers(dest="params_cmd", required=True)
    sh = psub.add_parser("show", help="active sets, their effect, the pending proposal and the promotion history")
    sh.add_argument("--agent", choices=AGENTS)
    pr = psub.add_parser("promote", help="make the proposal the agent's active set (guard rails apply)")
    pr.add_argument("--proposal", help="proposal file (default TB_PROPOSED_PARAMS_PATH)")
    pr.add_argument("--force", action="store_true", help="promote even when guard rails refuse (recorded)")
    rb = psub.add_parser("rollback", help="return to the set active before the latest promotion")
    rb.add_argument("--agent", choices=AGENTS, required=True)
    aa = psub.add_parser("auto-apply", help="promote the proposal if TB_AUTO_APPLY_ENABLED, no TB_AUTO_APPLY_KILL "
                                            "and every guard rail passes")
    aa.add_argument("--proposal", help="proposal file (default TB_PROPOSED_PARAMS_PATH)")


def dispatch(args, env_file: str = ".env") -> int:
    if args.cmd == "optimize":
        return run_optimize(args, env_file)
    return run_params(args, env_file)


def _when(s: str | None, opt: str) -> datetime | None:
    from tracer.backtest.cli import _when as when
    return when(s, opt, "tracer optimize")


def data_window(s, symbols, data_dir: Path | None, interval: timedelta) -> tuple[datetime, datetime]:
    """First usable bar close (after the TB_MIN_BARS warm-up) and the end of the common data."""
    import numpy as np
    from tracer.backtest.runner import load_history
    series = load_history(symbols, data_dir, interval)
    common = series[0].ts_ns
    for sr in series[1:]:
        common = np.intersect1d(common, sr.ts_ns, assume_unique=True)
    if len(common) < s.min_bars + 1:
        raise ValueError("not enough common bars for the warm-up (TB_MIN_BARS)")
    iv = int(interval.total_seconds() * 1e9)
    first = int(common[max(s.min_bars - 1, 0)]) + iv
    last = int(common[-1]) + iv
    conv = lambda ns: datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)  # noqa: E731
    return conv(first), conv(last) + timedelta(microseconds=1)


def run_optimize(args, env_file: str = ".env") -> int:
    from tracer.backtest.data import DataError, discover
    from tracer.cli_args import headlines_file
    from tracer.optimize import study as st
    from tracer.optimize.objective import ObjectiveConfig
    from tracer.optimize.params import code_version, write_json
    from tracer.optimize.walkforward import folds as make_folds

    environ = dict(os.environ)
    overrides: dict[str, str] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or name not in env_names():
            print(f"tracer optimize: --set {item!r}: expected NAME=VALUE with a known TB_ variable", file=sys.stderr)
            return 2
        environ[name] = overrides[name] = value
    warnings: list[str] = []     # a misspelt variable in .env would run at its default unsaid
    try:
        s = load_settings(environ, dotenv_path=env_file, warn=warnings.append)
    except ConfigError as e:
        print(f"tracer optimize: {e}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"tracer optimize: warning: {w}", file=sys.stderr)
    try:        # as the replay agent reads them (TB_HEADLINES_PATH), unless --headlines names another file
        headlines = headlines_file(args.headlines, s.headlines_path)
    except ValueError as e:
        print(f"tracer optimize: {e}", file=sys.stderr)
        return 2
    if args.jobs < 1 or (args.trials is not None and args.trials < 1):
        print("tracer optimize: --jobs and --trials must be >= 1", file=sys.stderr)
        return 2
    data_dir = Path(args.data) if args.data else None
    interval = timedelta(hours=1)
    if args.symbols:
        from tracer.symbols import canonical
        symbols = [canonical(x.strip()) for x in args.symbols.split(",") if x.strip()]
    elif data_dir is not None:
        symbols = sorted(discover(data_dir))
    else:
        symbols = list(s.symbols if args.agent == "hybrid" else s.futures_symbols)
    if data_dir is not None:
        found = discover(data_dir)
        ivs = {found[sym][0] for sym in symbols if sym in found}
        if len(ivs) == 1:
            interval = ivs.pop()
    try:
        lo, hi = data_window(s, symbols, data_dir, interval)
        start = max(_when(args.start, "--from") or lo, lo)
        end = min(_when(args.end, "--to") or hi, hi)
        fl = make_folds(start, end, timedelta(days=args.train_days or s.optimize_train_days),
                        timedelta(days=args.test_days or s.optimize_test_days), args.folds or s.optimize_max_folds)
    except (DataError, ValueError) as e:
        print(f"tracer optimize: {e}", file=sys.stderr)
        return 2
    trials = args.trials or s.optimize_trials
    seed = s.optimize_seed if args.seed is None else args.seed
    cfg = ObjectiveConfig.from_settings(s)
    code = code_version()
    storage = st.storage_url(args.storage or s.optimize_storage, s.state_dir)
    name = args.study or st.default_study_name(args.agent, symbols, fl, trials, seed, overrides, code, cfg)
    job = st.Job(agent=args.agent, symbols=symbols, folds=fl, trials=trials, seed=seed, storage=storage, study=name,
                 base_env=environ, env_file=env_file, data_dir=str(data_dir) if data_dir else None,
                 headlines=str(headlines) if headlines else None, interval_s=int(interval.total_seconds()),
                 objective=cfg, overrides=overrides, profile=s.profile)
    err = Console(stderr=True)
    log = lambda m: err.print(m, highlight=False)  # noqa: E731
    if args.worker is not None:
        if args.worker < 1:
            print("tracer optimize: --worker ID must be >= 1", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        n = st.run_workers(job, args.jobs, base=100 * args.worker)
        print(f"worker {args.worker}: ran {n} trial(s) of study {name} in {time.perf_counter() - t0:.1f} s")
        return 0
    try:
        result = st.run_optimisation(job, args.jobs, log)
    except (DataError, RuntimeError) as e:
        print(f"tracer optimize: {e}", file=sys.stderr)
        return 2
    proposal = st.proposal_from(job, result, code, st.storage_shown(storage))
    proposal["optimiser"].update(jobs=args.jobs, wall_s=round(result["wall_s"], 2),
                                 search_s=round(result["search_s"], 2))
    out = Path(args.out or f"backtests/optimize/{args.agent}")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", dict(proposal, history=result["history"]))
    ppath = Path(args.proposal) if args.proposal else s.proposed_params_path
    write_json(ppath, proposal)
    if not args.no_plot:
        st.plot(result, args.agent, out)
    print_report(proposal, Console() if sys.stdout.isatty() else Console(width=160))
    print(f"proposal written to {ppath} (not applied: tracer params promote); report in {out}/; "
          f"{result['wall_s']:.1f} s wall")
    if args.alert:
        _alert_proposal(s, proposal, ppath)
    return 0


def _alert_proposal(s, proposal: dict, ppath: Path) -> None:
    from tracer.store import Store
    from tracer.notify.outbox import enqueue
    from tracer.optimize.params import _fmt, _metrics_line
    store = Store(s.db_path)
    try:
        with store.transaction():
            enqueue(store, s, "params_proposal",
                    f"optimisation proposal for {proposal['agent']} ({ppath}): {_fmt(proposal['params'])}. "
                    f"{_metrics_line(proposal)}. Not applied: tracer params promote", proposal["agent"])
    finally:
        store.close()


def _pct(x):
    return "" if x is None else f"{x:+.2%}"


def print_report(proposal: dict, console: Console) -> None:
    m = proposal["metrics"]
    obj = m["objective"]
    t = Table(title=f"{proposal['agent']}: best parameters of the last fold, in-sample vs out-of-sample "
                    f"(train {proposal['data']['train']['from'][:10]}..{proposal['data']['train']['to'][:10]}, "
                    f"test {proposal['data']['test']['from'][:10]}..{proposal['data']['test']['to'][:10]})",
              title_justify="left")
    cols = (("in_sample", "proposed, in-sample"), ("out_of_sample", "proposed, out-of-sample"),
            ("current_in_sample", "current, in-sample"), ("current_out_of_sample", "current, out-of-sample"))
    t.add_column("metric")
    for _, lab in cols:
        t.add_column(lab, justify="right")
    t.add_row("objective", *[f"{obj[k]:.3f}" for k, _ in cols])
    for key, fmt in (("total_return", _pct), ("sharpe", lambda x: f"{x:.2f}"),
                     ("max_drawdown", lambda x: f"{x:.2%}"), ("trades", str),
                     ("win_rate", lambda x: "" if x is None else f"{x:.1%}"),
                     ("profit_factor", lambda x: "" if x is None else f"{x:.2f}"),
                     ("fees_paid", lambda x: f"{x:.2f}")):
        t.add_row(key, *[fmt(m[k].get(key)) if m[k].get(key) is not None else "" for k, _ in cols])
    console.print(t)
    p = Table(title="parameters", title_justify="left")
    for c in ("variable", "current", "proposed"):
        p.add_column(c)
    for k, v in sorted(proposal["params"].items()):
        cur = proposal["current"].get(k)
        p.add_row(k, f"{cur:g}" if cur is not None else "", f"{v:g}" + ("" if cur == v else " *"))
    console.print(p)
    f = Table(title="walk-forward folds (objective)", title_justify="left")
    for c in ("fold", "train", "test", "in-sample", "out-of-sample", "current out-of-sample"):
        f.add_column(c)
    for r in proposal["folds"]:
        f.add_row(str(r["fold"]), f"{r['train_from'][:10]}..{r['train_to'][:10]}",
                  f"{r['test_from'][:10]}..{r['test_to'][:10]}", f"{r['objective']['in_sample']:.3f}",
                  f"{r['objective']['out_of_sample']:.3f}", f"{r['objective']['current_out_of_sample']:.3f}")
    console.print(f)
    console.print(f"walk-forward mean out-of-sample objective: proposed {obj['walk_forward_out_of_sample']:.3f}, "
                  f"current {obj['walk_forward_current_out_of_sample']:.3f}")


def run_params(args, env_file: str = ".env") -> int:
    from tracer.store import Store
    from tracer.optimize import params as pm
    try:
        s = load_settings(dotenv_path=env_file)
    except ConfigError as e:
        print(f"tracer params: {e}", file=sys.stderr)
        return 2
    console = Console() if sys.stdout.isatty() else Console(width=160)
    store = Store(s.db_path)
    try:
        if args.params_cmd == "show":
            return _show(store, s, console, args.agent, env_file)
        if args.params_cmd == "rollback":
            o = pm.rollback(store, s, args.agent, actor=_actor())
            print(o.message)
            return 0 if o.ok else 1
        path = Path(args.proposal) if args.proposal else s.proposed_params_path
        proposal = pm.read_json(path)
        if proposal is None:
            print(f"tracer params: no proposal at {path} (run tracer optimize first)", file=sys.stderr)
            return 1
        auto = args.params_cmd == "auto-apply"
        o = pm.promote(store, s, proposal, actor="auto-apply" if auto else _actor(), auto=auto,
                       force=bool(getattr(args, "force", False)))
        print(o.message if o.ok or not o.reasons else f"refused by {len(o.reasons)} guard rail(s):")
        for r in o.reasons:
            print(f"  - {r}")
        sh = pm.shadowed(proposal.get("agent", "hybrid"), dotenv_path=env_file) if o.ok else []
        if sh:
            print(f"warning: set in the environment or .env, so the promoted value has no effect: {', '.join(sh)}")
        return 0 if o.ok else 1
    finally:
        store.close()


def _actor() -> str:
    try:
        return getpass.getuser()
    except Exception:   # noqa: BLE001
        return "unknown"


def _show(store, s, console: Console, agent: str | None, env_file: str) -> int:
    from tracer.optimize import params as pm
    sets = pm.active_sets(s.active_params_path)
    for a in ([agent] if agent else list(pm.AGENTS)):
        t = Table(title=f"{a}: parameters in force ({s.active_params_path})", title_justify="left")
        for c in ("variable", "in force", "promoted", "source"):
            t.add_column(c)
        cur = pm.current_values(s, a)
        sh = set(pm.shadowed(a, dotenv_path=env_file))
        for k in pm.space(a, s.profile):
            prom = sets.get(a, {}).get(k)
            src = "environment/.env" if k in sh else ("promoted" if prom is not None else "profile/default")
            t.add_row(k, f"{cur[k]:g}", "" if prom is None else f"{prom:g}", src)
        console.print(t)
    prop = pm.read_json(s.proposed_params_path)
    if prop and (agent is None or prop.get("agent") == agent):
        data = prop.get("data") or {}
        console.print(f"pending proposal {s.proposed_params_path}: {prop.get('agent')}, made "
                      f"{prop.get('created_at', '?')} on {prop.get('code_version', '?')}, data "
                      f"{str(data.get('from', '?'))[:10]}..{str(data.get('to', '?'))[:10]}", highlight=False)
        try:
            print_report(prop, console)
        except (KeyError, TypeError, AttributeError):
            console.print(f"  parameters: {pm._fmt(prop.get('params') or {})}", highlight=False)
    h = Table(title="promotion history", title_justify="left")
    for c in ("#", "time", "agent", "action", "actor", "note", "rolled back"):
        h.add_column(c, overflow="fold")
    for r in store.promotions(agent)[-20:]:
        h.add_row(str(r["id"]), r["ts"], r["agent"], r["action"], r["actor"], r["reason"],
                  "yes" if r["rolled_back"] else "")
    console.print(h)
    return 0

