"""``tracer study``: options, settings, progress bar, outputs (registered in tracer/cli.py)."""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from tracer.config import ConfigError, PROFILES, env_names
from tracer.models import AGENTS

if TYPE_CHECKING:
    from tracer.study.engine import ProposalOrigin

PROG = "tracer study"


def add_parser(sub) -> None:
    p = sub.add_parser("study", help="walk-forward out-of-sample study of a profile: benchmarks, costs, ablation, "
                                     "uncertainty (report.md, study.json, plots)")
    p.add_argument("--agent", choices=AGENTS, default="hybrid")
    p.add_argument("--profile", choices=tuple(PROFILES), help="TB_PROFILE to study (default: the configured one)")
    p.add_argument("--params", help="JSON parameter set to study: {TB_NAME: value} or a proposal/active file "
                                    "with a 'params' object")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override one TB_ setting")
    p.add_argument("--data", help="folder of candles_<interval>_<SYMBOL>.csv files (default: the bundled 16-month "
                                  "history)")
    p.add_argument("--headlines", help="headlines CSV (default: TB_HEADLINES_PATH, else headlines.csv in the data "
                                       "folder; for the bundled history, the bundled headlines; none: price-only)")
    p.add_argument("--symbols", help="comma list (default: the agent's symbols)")
    p.add_argument("--from", dest="start", help="first UTC date/time used (default: start of the data)")
    p.add_argument("--to", dest="end", help="end of the data used (default: end of the data)")
    p.add_argument("--folds", type=int, help="most recent folds used (default: every fold that fits)")
    p.add_argument("--train-days", type=float, default=90.0, help="training window (default 90)")
    p.add_argument("--test-days", type=float, default=30.0, help="test window and roll step (default 30)")
    p.add_argument("--purge-bars", type=int, help="gap between training and test (default TB_LOOKBACK_BARS)")
    p.add_argument("--trials", type=int, default=20, help="candidates per fold (default 20; 0 = the profile as is)")
    p.add_argument("--prior-trials", type=int, default=0,
                   help="configurations tried before this study, counted in the deflated Sharpe ratio")
    p.add_argument("--seed", type=int, default=42, help="seed of the candidates and the bootstrap (default 42)")
    p.add_argument("--costs", default="0,1,2", help="fee and slippage multipliers (default 0,1,2; must hold 1)")
    p.add_argument("--ablate", action="store_true", help="switch each component off in turn")
    p.add_argument("--jobs", type=int, default=1, help="worker processes sharing the Optuna storage")
    p.add_argument("--storage", help="Optuna RDB URL shared by the --jobs workers (default TB_OPTIMIZE_STORAGE, "
                                     "else SQLite in the output folder; or postgresql://user@host/db)")
    p.add_argument("--out", help="output folder (default backtests/study/<agent>)")
    p.add_argument("--no-plot", action="store_true", help="skip the plots")


def _fail(msg: str) -> int:
    print(f"{PROG}: {msg}", file=sys.stderr)
    return 2


def _param_file(path: str) -> dict[str, str]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"--params {path!r}: cannot read a JSON object ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("params"), dict):
        data = data["params"]
    if not isinstance(data, dict) or not data:
        raise ValueError(f"--params {path!r}: expected {{TB_NAME: value}} or an object with 'params'")
    known = env_names()
    bad = [k for k in data if k not in known]
    if bad:
        raise ValueError(f"--params {path!r}: unknown setting(s) {', '.join(sorted(bad))}")
    return {k: str(v) for k, v in data.items()}


def _proposal_origin(path: str) -> ProposalOrigin | None:
    """The search and training window of a ``tracer optimize`` proposal (None for a plain parameter set): its
    trials are configurations tried before the study, and its window may lie inside the study's test windows."""
    from tracer.study.engine import ProposalOrigin
    from tracer.store import parse_iso

    data = json.loads(Path(path).read_text())
    opt_, win = data.get("optimiser"), data.get("data")
    if not (isinstance(opt_, dict) and isinstance(win, dict) and isinstance(win.get("train"), dict)):
        return None
    try:
        trials = int(opt_["trials_per_fold"]) * max(len(data.get("folds") or ()), 1)
        return ProposalOrigin(trials, parse_iso(win["train"]["from"]), parse_iso(win["train"]["to"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"--params {path!r}: an optimizer proposal without a readable search or window ({e})") \
            from None


def _option(word: str) -> str:
    """The long option ``word`` names: argparse takes any unambiguous prefix (``--stor`` is ``--storage``)."""
    return "--storage" if len(word) > 3 and "--storage".startswith(word) else word


def _masked_word(word: str, option: str) -> str:
    """One argument as the report shows it: the value of ``--storage`` without its password, a secret
    ``NAME=VALUE`` (``--set``) masked."""
    from tracer.config import masked_overrides
    from tracer.optimize.study import storage_shown
    if option == "--storage":
        return storage_shown(word)
    name, sep, value = word.partition("=")
    return f"{name}={masked_overrides({name: value})[name]}" if sep and name.startswith("TB_") else word


def _masked_argv(argv: list[str]) -> list[str]:
    """The command line as the report shows it: ``--storage URL`` (or ``--storage=URL``) without its password,
    the value of a secret ``--set NAME=VALUE`` masked."""
    out, option = [], ""
    for a in argv:
        if a.startswith("--"):
            name, sep, value = a.partition("=")
            out.append(f"{name}={_masked_word(value, _option(name))}" if sep else a)
            option = "" if sep else _option(name)
        else:
            out.append(_masked_word(a, option))
            option = ""
    return out


def reproduce_command(argv: list[str], agent: str, fee_bps: float, slippage_bps: float) -> str | None:
    """The study's command line as its report shows it, with the costs it ran at in front: the defaults change
    (the fees did on 2026-12-06), and a report must still say how to get its own numbers back."""
    from tracer.study.components import cost_overrides

    if "study" not in argv:
        return None
    costs = " ".join(f"{k}={float(v):g}" for k, v in cost_overrides(1.0, fee_bps, slippage_bps, agent).items())
    return f"{costs} tracer " + " ".join(shlex.quote(a) for a in _masked_argv(argv[argv.index("study"):]))


def run(args, env_file: str = ".env") -> int:
    from tracer.backtest.cli import _when
    from tracer.backtest.data import DataError
    from tracer.study.engine import StudyConfig, run_study
    from tracer.study.report import write

    overrides: dict[str, str] = {}
    proposal = None
    try:
        if args.params:
            overrides.update(_param_file(args.params))
            proposal = _proposal_origin(args.params)
        for item in args.set:
            name, sep, value = item.partition("=")
            if not sep or name not in env_names():
                return _fail(f"--set {item!r}: expected NAME=VALUE with a known TB_ variable")
            overrides[name] = value
        try:
            costs = tuple(float(x) for x in args.costs.split(",") if x.strip())
        except ValueError:
            return _fail(f"--costs {args.costs!r}: expected comma-separated numbers such as 0,1,2")
        symbols = ()
        if args.symbols:
            from tracer.symbols import canonical
            symbols = tuple(canonical(x.strip()) for x in args.symbols.split(",") if x.strip())
        out = Path(args.out or f"backtests/study/{args.agent}")
        cfg = StudyConfig(agent=args.agent, out=out, data_dir=Path(args.data) if args.data else None,
                          headlines=Path(args.headlines) if args.headlines else None, symbols=symbols,
                          profile=args.profile, overrides=overrides, env=dict(os.environ), env_file=env_file,
                          start=_when(args.start, "--from", PROG), end=_when(args.end, "--to", PROG),
                          train_days=args.train_days, test_days=args.test_days, purge_bars=args.purge_bars,
                          folds=args.folds, trials=args.trials, seed=args.seed, costs=costs, ablate=args.ablate,
                          jobs=args.jobs, storage=args.storage or "", prior_trials=args.prior_trials,
                          proposal=proposal)
    except ValueError as e:
        return _fail(str(e))
    except SystemExit as e:          # a --from/--to that is not ISO 8601 (the message names it)
        print(e, file=sys.stderr)
        return 2
    console = Console(stderr=True)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)
    tasks: dict[str, int] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = prog.add_task(f"{args.agent} {phase}", total=total)
        prog.update(tasks[phase], completed=done, total=total)
    try:
        with prog:
            outcome = run_study(cfg, progress)
    except (ConfigError, DataError, ValueError, RuntimeError) as e:
        return _fail(str(e))
    d = outcome.doc["design"]
    command = reproduce_command(sys.argv[1:], args.agent, d["fees_bps"], d["slippage_bps"])
    write(outcome, cfg.out, command, plots=not args.no_plot)
    m, ds = outcome.doc["oos"], outcome.doc["deflated_sharpe"]
    print(f"OOS {outcome.doc['design']['oos_from'][:10]} -> {outcome.doc['design']['oos_to'][:10]}: net return "
          f"{m['total_return']:+.2%}, Sharpe {m['sharpe']:.2f} [{m['sharpe_ci']['lo']:.2f}, {m['sharpe_ci']['hi']:.2f}], "
          f"max DD {m['max_drawdown']:.2%}, {m['entries_per_day'] or 0:.2f} entries/day; deflated Sharpe "
          f"{ds['dsr']:.3f} after {ds['n_trials']} configurations")
    for k, b in outcome.doc["benchmarks"].items():
        print(f"  {k:<18} net return {b['total_return']:+.2%}, Sharpe {b['sharpe']:.2f}, max DD {b['max_drawdown']:.2%}")
    if outcome.doc.get("oos_warning"):
        print(f"warning: {outcome.doc['oos_warning']}")
    print(f"report: {cfg.out / 'report.md'}")
    return 0
