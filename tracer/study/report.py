"""Study outputs: ``study.json`` (every number), ``report.md`` (the tables a reader needs) and plots."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from tracer.logs import private_write_text
from tracer.study.benchmarks import RULE_TEXT, Rule
from tracer.study.engine import Outcome
from tracer.study.metrics import Run


class Verdict:
    EARNS = "earns its keep"
    COSTS = "costs OOS Sharpe"
    UNCLEAR = "not distinguishable from off"
    NOOP = "already off: no change"
    NONE = "no effect on these windows"


def verdict(row: Mapping[str, Any]) -> str:
    """From the 90% interval of Sharpe(component off) - Sharpe(on)."""
    if row.get("noop"):
        return Verdict.NOOP
    d = row["delta_sharpe"]
    if d["point"] == 0.0 and d["lo"] == d["hi"] == 0.0 and row.get("delta_return") == 0.0:
        return Verdict.NONE
    if d["hi"] is not None and d["hi"] < 0:
        return Verdict.EARNS
    if d["lo"] is not None and d["lo"] > 0:
        return Verdict.COSTS
    return Verdict.UNCLEAR


def _pct(x) -> str:
    return "–" if x is None else f"{x * 100:+.1f}%"


def _pos(x) -> str:
    return "–" if x is None else f"{x * 100:.1f}%"


def _num(x, nd: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:,.{nd}f}"


def _ci(c: Mapping[str, Any] | None, fmt=_num) -> str:
    if not c or c.get("lo") is None:
        return "–"
    return f"[{fmt(c['lo'])}, {fmt(c['hi'])}]"


def _name(key: str, agent: str) -> str:
    try:
        return RULE_TEXT[Rule(key)]
    except ValueError:
        return key


def _row(label: str, m: Mapping[str, Any]) -> str:
    return ("| " + " | ".join([
        label, _pct(m.get("total_return")), _pct(m.get("cagr")),
        f"{_num(m.get('sharpe'))} {_ci(m.get('sharpe_ci'))}", _num(m.get("sortino")), _pos(m.get("max_drawdown")),
        _num(m.get("calmar")), _pos(m.get("exposure")), _num(m.get("turnover"), 1), _num(m.get("entries_per_day")),
        _num(m.get("avg_hold_h"), 1), _pos(m.get("fees_share_of_gross")), _pos(m.get("funding_share_of_gross")),
        _pos(m.get("win_rate")), _num(m.get("profit_factor")),
        f"{_pct(m.get('avg_trade_return'))} {_ci(m.get('trade_return_ci'), _pct)}", _num(m.get("avg_r")),
    ]) + " |")


HEADER = ("| run | net return | CAGR | Sharpe [90% CI] | Sortino | max DD | Calmar | exposure | turnover/yr | "
          "entries/day | avg hold h | fees/gross | funding/gross | win rate | profit factor | "
          "avg trade return [90% CI] | avg R |\n|" + "---|" * 17)


def targets(doc: Mapping[str, Any]) -> list[tuple[str, bool, str]]:
    """The issue's targets for a default profile, checked on this study's OOS numbers."""
    m = doc["oos"]
    bh = doc["benchmarks"].get(Rule.BUY_HOLD_EQUAL.value, {})
    epd = m.get("entries_per_day") or 0.0
    return [
        ("net return > 0", m["total_return"] > 0, _pct(m["total_return"])),
        ("Sharpe >= 0.5", m["sharpe"] >= 0.5, _num(m["sharpe"])),
        ("0.2 <= entries/day <= 2", 0.2 <= epd <= 2.0, _num(epd)),
        ("max DD below equal-weight buy-and-hold's", m["max_drawdown"] < bh.get("max_drawdown", 0.0),
         f"{_pos(m['max_drawdown'])} vs {_pos(bh.get('max_drawdown'))}"),
    ]


def markdown(doc: Mapping[str, Any], command: str | None = None) -> str:
    d = doc["design"]
    agent = doc["agent"]
    ct = doc["configurations_tried"]
    L: list[str] = []
    L.append(f"# Strategy study: {agent} agent, profile `{doc['profile']}`")
    L.append("")
    if doc["overrides"]:
        L.append("Overrides: " + ", ".join(f"`{k}={v}`" for k, v in sorted(doc["overrides"].items())))
        L.append("")
    if command:
        L.append(f"Reproduce: `{command}` (seed {doc['seed']}, code {doc['code_version']}).")
        L.append("")
    if doc.get("oos_warning"):
        L.append(f"**Warning: {doc['oos_warning']}.** Its optimizer's search is counted in the deflated Sharpe "
                 f"ratio ({ct['proposal']} configurations).")
        L.append("")
    L.append("## Design")
    L.append("")
    L.append(f"- Data: `{doc['data_dir']}` ({', '.join(doc['symbols'])}), bar closes {d['data_from'][:16]} → "
             f"{d['data_to'][:16]} UTC; headlines: `{doc['headlines'] or 'none'}` (none before 2021-10-12: "
             f"decisions before that are price-only).")
    L.append(f"- Walk-forward: {d['folds']} rolling folds, train {d['train_days']:g} days, purge {d['purge_bars']} "
             f"bars (the look-back), test {d['test_days']:g} days; the test windows tile "
             f"{d['oos_from'][:10]} → {d['oos_to'][:10]} and their chained equity is the out-of-sample (OOS) "
             f"result. " + ("Parameters are chosen on each training window only." if not doc.get("oos_warning") else
                            "The parameters studied were fitted on data inside these test windows (see the warning)."))
    if d["trials_per_fold"]:
        L.append(f"- In-fold search: {d['trials_per_fold']} candidates per fold (the parameters in force + seeded "
                 f"random draws from `tracer optimize`'s space), objective of `tracer optimize` "
                 f"({', '.join(f'{k}={v:g}' for k, v in d['objective'].items())}), {d['jobs']} worker(s), "
                 f"storage `{d['storage']}`.")
    else:
        L.append("- No search: the profile as given is scored on every test window.")
    L.append(f"- Configurations tried: **{ct['total']}** ({ct['this_study']} in this study"
             + (f" + {ct['prior']} before it" if ct["prior"] else "")
             + (f", {ct['proposal']} of them by the optimizer that made the --params proposal"
                if ct.get("proposal") else "") + ").")
    L.append(f"- Costs: fee {d['fees_bps']:g} bps + slippage {d['slippage_bps']:g} bps per side"
             + (f", funding {d['funding_rate_8h']:g} per 8 h" if d["funding_rate_8h"] else "")
             + "; benchmarks pay the same.")
    L.append(f"- Uncertainty: circular block bootstrap, blocks of {d['block_bars']} bars, {d['reps']} resamples, "
             f"90% percentile intervals (seed {doc['seed']}).")
    gap_rule = (f"the gap policy, as live: holes of up to {d['max_gap_bars']} bars are accepted"
                if d.get("max_gap_bars") is not None else "the gap policy, as live")
    if d["decision_blackout_bars"]:
        L.append(f"- Data gaps: on {d['decision_blackout_bars']} OOS bars some symbol could not be evaluated "
                 f"(a longer hole in its look-back window, or too short a history; {gap_rule}). The "
                 f"benchmarks trade through the gaps.")
    else:
        L.append(f"- Data gaps: no OOS decision was skipped for missing bars ({gap_rule}).")
    L.append("")
    L.append("## Out-of-sample result against the benchmarks")
    L.append("")
    L.append(HEADER)
    L.append(_row(f"**{agent}** (OOS)", doc["oos"]))
    if "untuned" in doc:
        L.append(_row(f"{agent}, profile untuned", doc["untuned"]))
    for k, m in doc["benchmarks"].items():
        L.append(_row(_name(k, agent), m))
    L.append("")
    L.append("Turnover: traded notional (in and out) over mean equity, per year. Fees/funding over |gross P&L| "
             "(gross = before fees and funding). Avg R: P&L over the risk at the initial ATR stop.")
    L.append("")
    ds, ps = doc["deflated_sharpe"], doc["probabilistic_sharpe"]
    per_year = math.sqrt(365 * 86400 / doc["interval_s"])
    L.append("## Is the Sharpe ratio real?")
    L.append("")
    L.append("| measure | value |\n|---|---|")
    L.append(f"| OOS Sharpe (annualised) | {_num(doc['oos']['sharpe'])} {_ci(doc['oos'].get('sharpe_ci'))} |")
    L.append(f"| probabilistic Sharpe ratio, P(true Sharpe > 0) | {_num(ps['dsr'], 3)} |")
    L.append(f"| Sharpe expected from the best of {ds['n_trials']} unskilled configurations (annualised) | "
             f"{_num(ds['sr0'] * per_year)} |")
    L.append(f"| **deflated Sharpe ratio**, P(true Sharpe > that) | **{_num(ds['dsr'], 3)}** |")
    L.append(f"| observations, skewness, kurtosis | {ds['observations']}, {_num(ds['skew'])}, {_num(ds['kurtosis'])} |")
    L.append("")
    L.append("A deflated Sharpe ratio below 0.95 means the OOS result is not distinguishable from the best of that "
             "many configurations without skill. The count is conservative (every candidate of every fold); the "
             "spread of unskilled Sharpe ratios is that of the candidates' in-sample ones, rescaled from the "
             "training length to the OOS length (under no skill it is estimation noise, variance ~ 1/length).")
    if doc["configurations_tried"].get("sharpe_variance_source") == "null":
        L.append("")
        L.append("This study searched nothing (or its candidates' Sharpe ratios did not vary), so that spread was not "
                 "measured: it is the null's own, 1/length, as if the prior configurations were independent trials "
                 "(conservative: correlated ones would deflate less).")
    L.append("")
    if "untuned" in doc:
        dci = doc["untuned"]["delta_sharpe_ci"]
        L.append(f"Tuning in folds vs the profile untuned: OOS Sharpe {_num(doc['oos']['sharpe'])} vs "
                 f"{_num(doc['untuned']['sharpe'])}, difference {_num(dci['point'])} {_ci(dci)}.")
        L.append("")
    L.append("## Targets of the default profile (issue 18 §2)")
    L.append("")
    L.append("| target | met | value |\n|---|---|---|")
    for name, ok, val in targets(doc):
        L.append(f"| {name} | {'yes' if ok else '**no**'} | {val} |")
    L.append("")
    L.append("## Cost sensitivity (fees and slippage scaled)")
    L.append("")
    keys = list(doc["costs"])
    L.append("| run | " + " | ".join(f"{k} net return | {k} Sharpe" for k in keys) + " |")
    L.append("|---|" + "---|---|" * len(keys))
    L.append(f"| **{agent}** | " + " | ".join(f"{_pct(doc['costs'][k]['agent']['total_return'])} | "
                                             f"{_num(doc['costs'][k]['agent']['sharpe'])}" for k in keys) + " |")
    for b in doc["benchmarks"]:
        L.append(f"| {_name(b, agent)} | " + " | ".join(
            f"{_pct(doc['costs'][k]['benchmarks'][b]['total_return'])} | "
            f"{_num(doc['costs'][k]['benchmarks'][b]['sharpe'])}" for k in keys) + " |")
    L.append("")
    L.append("The parameters chosen at ×1 are kept at every cost level (the search is not rerun).")
    L.append("")
    if doc["ablation"]:
        L.append("## Ablation: each component switched off in turn (chosen parameters kept)")
        L.append("")
        L.append("| component | switched off by | OOS net return | Δ return | Sharpe | Δ Sharpe [90% CI] | "
                 "entries/day | verdict |\n|---|---|---|---|---|---|---|---|")
        for r in doc["ablation"]:
            L.append(f"| {r['component']} | {r['how']} | {_pct(r['total_return'])} | {_pct(r['delta_return'])} | "
                     f"{_num(r['sharpe'])} | {_num(r['delta_sharpe']['point'])} {_ci(r['delta_sharpe'])} | "
                     f"{_num(r['entries_per_day'])} | {verdict(r)} |")
        L.append("")
        earn = [r["component"] for r in doc["ablation"] if verdict(r) == Verdict.EARNS]
        cost = [r["component"] for r in doc["ablation"] if verdict(r) == Verdict.COSTS]
        L.append(f"Plainly: earning their keep OOS: {', '.join(earn) or 'none'}; costing OOS Sharpe: "
                 f"{', '.join(cost) or 'none'}; the rest cannot be told apart from off at 90%.")
        L.append(f"Not ablatable: none of the {len(doc['ablation'])} components lacks a switch. Side effects: the "
                 "conviction gate "
                 "at 1 also widens the 20–100% sizing span (and, futures, the leverage choice); sentiment off "
                 "removes the headlines, so divergence is off with it.")
        L.append("")
    L.append("## Folds")
    L.append("")
    L.append("| fold | train | test | OOS net return | OOS Sharpe | OOS entries/day | in-sample objective |\n"
             "|---|---|---|---|---|---|---|")
    for r in doc["folds"]:
        L.append(f"| {r['fold']} | {r['train_from'][:10]} → {r['train_to'][:10]} | {r['test_from'][:10]} → "
                 f"{r['test_to'][:10]} | {_pct(r['oos']['total_return'])} | {_num(r['oos']['sharpe'])} | "
                 f"{_num(r['oos']['entries_per_day'])} | {_num(r.get('in_sample_objective'))} |")
    L.append("")
    chosen = [r["params"] for r in doc["folds"] if r.get("params")]
    if chosen:
        L.append("Parameters chosen on each training window (fold 0 first): a value that jumps between folds is "
                 "noise being fitted, not a stable optimum.")
        L.append("")
        L.append("| parameter | chosen per fold |\n|---|---|")
        for k in chosen[0]:
            L.append(f"| `{k}` | {', '.join(f'{c[k]:g}' for c in chosen)} |")
        L.append("")
    L.append("Plots: `equity.png` (OOS equity, agent and benchmarks, drawdown below), `folds.png` (net return "
             "per test window). Every number: `study.json`.")
    return "\n".join(L) + "\n"


def plot_equity(curves: Mapping[str, Run], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from tracer.backtest.metrics import drawdown_series

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for i, (name, run) in enumerate(curves.items()):
        lw = 1.6 if i == 0 else 0.9
        rel = np.asarray(run.equity) / run.initial
        ax1.plot(run.ts, rel, lw=lw, label=_name(name, ""))
        if i == 0:
            dd = drawdown_series(np.concatenate([[run.initial], run.equity]))[1:] * 100
            ax2.fill_between(run.ts, dd, 0, color="#d62728", alpha=0.4)
    ax1.set_ylabel("equity / start")
    ax1.set_title(title)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8, loc="best")
    ax2.set_ylabel("agent DD %")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_folds(doc: Mapping[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["folds"]
    fig, ax = plt.subplots(figsize=(10, 3))
    xs = [r["fold"] for r in rows]
    ax.bar(xs, [100 * (r["oos"]["total_return"] or 0) for r in rows], color="#1f77b4")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(xs, [r["test_from"][:10] for r in rows], rotation=30, fontsize=7)
    ax.set_ylabel("OOS net return %")
    ax.set_title("net return of each test window")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write(outcome: Outcome, out: Path, command: str | None = None, plots: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc = dict(outcome.doc, command=command)
    _write_private(out / "study.json", json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    _write_private(out / "report.md", markdown(doc, command))
    if plots:
        plot_equity(outcome.curves, out / "equity.png",
                    f"{doc['agent']} OOS {doc['design']['oos_from'][:10]} → {doc['design']['oos_to'][:10]}")
        plot_folds(doc, out / "folds.png")


def _write_private(path: Path, text: str) -> None:
    """A report file user-only (0600) whatever the umask, as the DB and the logs, a rerun's over an older file
    too: it names the storage, the overrides and the command line."""
    path.unlink(missing_ok=True)
    private_write_text(path, text)
