"""``tracer run | universe | digest | eval``: the I/O shell around the pure research functions.

Outputs go under ``TB_RESEARCH_DIR`` (default ``state/research``): ``runs/<run_id>.json`` and
``bars/<run_id>.csv`` (``tracer run``), ``universe_runs/<as_of>.json`` and ``universe_runs/metrics.csv``
(``tracer universe``), ``eval_runs/<as_of>.json`` (``tracer eval``); rows go to the SQLite DB.
With ``TB_UNIVERSE_GIT_AUTOCOMMIT`` the folder is committed (as its own repository, never the code
checkout) after each scan and evaluation, and pushed with ``TB_UNIVERSE_GIT_PUSH``.
"""
from __future__ import annotations

import csv
import json
import logging
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from tracer.store import Store, iso, to_json, utcnow

COMMANDS = ("run", "universe", "digest", "eval")
log = logging.getLogger("tracer.research")


def add_parsers(sub: Any) -> None:
    r = sub.add_parser("run", help="one single-asset pass of the pipeline, explained (research; no order)")
    r.add_argument("--symbol", required=True, help="e.g. BTC/USD")
    r.add_argument("--as-of", help="replay time (ISO 8601 UTC); default: the last bar of the data (replay) or now")
    u = sub.add_parser("universe", help="scan and rank the universe on several timeframes (thesis, plan)")
    u.add_argument("--config", help="universe YAML (default TB_UNIVERSE_CONFIG)")
    u.add_argument("--top", type=int, help="show the N best-ranked assets (default: the file's top, 0 = all)")
    u.add_argument("--as-of", help="scan time (ISO 8601 UTC); default: the last bar (replay) or now (live)")
    u.add_argument("--from", dest="start", help="a series of scans from this time (with --to and --every)")
    u.add_argument("--to", dest="end", help="last scan time of the series")
    u.add_argument("--every", default="24h", help="step of the series, e.g. 24h, 4h, 1d (default 24h)")
    d = sub.add_parser("digest", help="the latest universe scan as a digest (Telegram text; --print-md: Markdown)")
    d.add_argument("--print-md", action="store_true", help="print the Markdown (Discord) digest")
    d.add_argument("--send", action="store_true", help="queue it in the notification outbox and deliver it")
    d.add_argument("--top", type=int, help="only the N best-ranked assets")
    d.add_argument("--run-id", type=int, help="a given universe run instead of the latest")
    d.add_argument("--timeout", type=float, default=20.0, help="seconds to spend delivering (--send)")
    e = sub.add_parser("eval", help="score the calls whose horizon has passed: hit rates and R")
    e.add_argument("--as-of", help="evaluation time; default: the last bar (replay) or now (live)")


def parse_time(s: str) -> datetime:
    t = pd.Timestamp(s)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.to_pydatetime()


def _stamp(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y%m%dT%H%MZ")


def _default_now(feed: Any, settings: Any) -> datetime:
    if settings.feed == "replay":
        last = feed.last_time()
        if last is None:
            raise SystemExit("tracer: the replay data has no common bar")
        return last
    return utcnow()


def _autocommit(settings: Any, message: str) -> None:
    if settings.universe_git_autocommit:
        from tracer.artifacts import autocommit
        autocommit(Path(settings.research_dir), message, settings.universe_git_push, log)


def dispatch(args: Any, settings: Any, console: Any) -> int:
    from tracer.research.universe import UniverseConfigError
    store = Store(settings.db_path)
    try:
        if args.cmd == "run":
            return cmd_run(args, settings, store, console)
        if args.cmd == "universe":
            return cmd_universe(args, settings, store, console)
        if args.cmd == "digest":
            return cmd_digest(args, settings, store, console)
        if args.cmd == "eval":
            return cmd_eval(args, settings, store, console)
    except (UniverseConfigError, ValueError, FileNotFoundError) as e:
        print(f"tracer {args.cmd}: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 1


# ---------------------------------------------------------------------------------------- run

def cmd_run(args: Any, s: Any, store: Store, console: Any) -> int:
    from tracer.explain import explain
    from tracer.data.factory import make_feed
    from tracer.research.scan import score_headlines
    from tracer.sentiment.factory import make_scorer
    from tracer.signals.evaluate import EvalParams, evaluate
    from tracer.symbols import canonical

    sym = canonical(args.symbol)
    feed = make_feed(s, [sym], store=store, logger=log)
    now = parse_time(args.as_of) if args.as_of else _default_now(feed, s)
    started = utcnow()
    snap = feed.snapshot(now)
    agent = f"research:{sym}"
    with store.transaction():
        known = store.run_at(agent, now)
        if known is None:
            run_id = store.insert_run(agent, 0, now, started)
        else:                                   # the same pass again: replace its signal
            run_id = known
            store.delete_signals(run_id)
        if sym not in snap.bars:
            reason = snap.rejected.get(sym, "no bars")
            store.insert_skip(run_id, agent, sym, now, reason)
            store.finish_run(run_id, symbols=0, skipped=1, status="ok", note=f"skipped: {reason}")
            sig = None
        else:
            bars = snap.bars[sym]
            scored = score_headlines(sym, snap.headlines, make_scorer(s, log, store))
            sig = evaluate(sym, bars, scored, now, EvalParams.from_settings(s, feed.interval))
            sid = store.insert_signal(run_id, agent, sig, "research", "single-asset research run: no order")
            store.finish_run(run_id, symbols=1, skipped=0, status="ok", note="research run")
    out = Path(s.research_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "bars").mkdir(parents=True, exist_ok=True)
    doc: dict = {"run_id": run_id, "agent": agent, "symbol": sym, "clock": iso(now), "feed": s.feed,
                 "headlines_in_window": len(snap.headlines)}
    if sig is None:
        doc["rejected"] = snap.rejected.get(sym, "no bars")
    else:
        doc.update({"signal_id": sid, "action": sig.action.value, "reason": sig.reason,
                    "scores": {"price_score": sig.price_score, "volume_z": sig.volume_z, "narrative": sig.narrative,
                               "divergence": sig.divergence, "divergence_trigger": sig.divergence_trigger,
                               "quality": sig.quality, "conviction": sig.conviction, "rsi": sig.rsi, "atr": sig.atr,
                               "regime": sig.regime.label, "volatility": sig.regime.volatility,
                               "headline_count": sig.headline_count, "scorer_id": sig.scorer_id},
                    "gates": sig.gates, "inputs": sig.inputs})
        snap.bars[sym].to_csv(out / "bars" / f"{run_id}.csv")
    (out / "runs" / f"{run_id}.json").write_text(to_json(doc))
    if sig is None:
        console.print(f"{sym} at {iso(now)}: not evaluated ({doc['rejected']}); run {run_id}")
        return 1
    explain(store, console, signal_id=sid)
    console.print(f"run {run_id}: {out / 'runs' / f'{run_id}.json'}, {out / 'bars' / f'{run_id}.csv'}")
    return 0


# ----------------------------------------------------------------------------------- universe

def _universe_setup(args: Any, s: Any, store: Store):
    from tracer.data.factory import make_feed
    from tracer.research.scan import feed_lookback
    from tracer.research.universe import load_config
    from tracer.sentiment.factory import make_scorer

    path = getattr(args, "config", None) or s.universe_config
    if getattr(args, "config", None) is None and not Path(path).is_file():
        print(f"note: {path} not found (run from the checkout, or set TB_UNIVERSE_CONFIG); "
              f"using the built-in universe", file=sys.stderr)
        path = None
    cfg = load_config(path)
    lb = feed_lookback(cfg, s.universe_lookback_bars)
    fs = replace(s, lookback_bars=lb, min_bars=min(s.universe_min_bars, lb))
    feed = make_feed(fs, cfg.symbols, store=store, logger=log)
    return cfg, feed, make_scorer(s, log, store)


def scan_times(args: Any, feed: Any, s: Any) -> list[datetime]:
    from tracer.research.timeframes import parse_timeframe
    if args.start or args.end:
        if not (args.start and args.end):
            raise ValueError("--from and --to go together")
        t, end, step = parse_time(args.start), parse_time(args.end), parse_timeframe(args.every)
        if end < t:
            raise ValueError("--to is before --from")
        out = []
        while t <= end:
            out.append(t)
            t += step
        return out
    return [parse_time(args.as_of) if args.as_of else _default_now(feed, s)]


def run_scan(now: datetime, cfg: Any, feed: Any, scorer: Any, s: Any, store: Store) -> tuple[dict, Path, int, bool]:
    """One scan: rank, write the JSON and the metrics rows, store the run and its calls."""
    from tracer.research.scan import scan_universe, universe_doc
    from tracer.research.universe import params_hash

    res = scan_universe(feed, scorer, now, cfg, s)
    doc = universe_doc(res, cfg, s.feed, params_hash(cfg, s))
    out = Path(s.research_dir) / "universe_runs"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{_stamp(now)}.json"
    doc = json.loads(to_json(doc))                 # the stored form (ISO times), byte-stable
    path.write_text(json.dumps(doc, sort_keys=True, indent=1))
    _append_metrics(out / "metrics.csv", doc)
    with store.transaction():
        rid, created = store.save_universe_run(doc, str(path))
    return doc, path, rid, created


METRICS_COLUMNS = ["as_of", "params_hash", "symbol", "rank", "action", "risk_band", "readiness", "rank_score",
                   "alignment", "alignment_score", "price", "narrative", "headlines", "timeframes", "composites",
                   "qualities", "convictions", "evidence"]


def _append_metrics(path: Path, doc: dict) -> None:
    seen: set[tuple[str, str, str]] = set()
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            seen = {(r["as_of"], r["params_hash"], r["symbol"]) for r in csv.DictReader(fh)}
    new = not path.is_file()
    with open(path, "a", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=METRICS_COLUMNS)
        if new:
            w.writeheader()
        for a in doc["assets"]:
            if (doc["as_of"], doc["params_hash"], a["symbol"]) in seen:
                continue
            order = [t["name"] for t in doc["config"]["timeframes"] if t["name"] in a["timeframes"]]
            tfs = {k: a["timeframes"][k] for k in order}
            first = next(iter(tfs.values()))["scores"] if tfs else {}
            w.writerow({"as_of": doc["as_of"], "params_hash": doc["params_hash"], "symbol": a["symbol"],
                        "rank": a["rank"], "action": a["thesis"]["action"], "risk_band": a["thesis"]["risk_band"],
                        "readiness": a["thesis"]["readiness"], "rank_score": a["thesis"]["rank_score"],
                        "alignment": a["alignment"]["label"], "alignment_score": a["alignment"]["score"],
                        "price": first.get("price"), "narrative": first.get("narrative"),
                        "headlines": first.get("headline_count"), "timeframes": "|".join(tfs),
                        "composites": "|".join(f"{t['scores']['composite']:+.4f}" for t in tfs.values()),
                        "qualities": "|".join(f"{t['scores']['quality']:.2f}" for t in tfs.values()),
                        "convictions": "|".join(f"{t['scores']['conviction']:.2f}" for t in tfs.values()),
                        "evidence": a["evidence"]})


def cmd_universe(args: Any, s: Any, store: Store, console: Any) -> int:
    from rich.table import Table

    cfg, feed, scorer = _universe_setup(args, s, store)
    if args.top is not None:    # recorded in the scan, so the digest of this run shows the same assets
        import dataclasses
        cfg = dataclasses.replace(cfg, top=args.top)
    times = scan_times(args, feed, s)
    top = cfg.top
    docs = []
    for now in times:
        doc, path, rid, created = run_scan(now, cfg, feed, scorer, s, store)
        docs.append(doc)
        if len(times) > 1:
            acts = [a["thesis"]["action"] for a in doc["assets"]]
            console.print(f"{doc['as_of']}: {len(acts)} assets, Buy {acts.count('Buy')}, Sell {acts.count('Sell')}, "
                          f"Watch {acts.count('Watch')} -> {path}" + ("" if created else " (already stored)"))
    if len(times) == 1:
        doc = docs[0]
        t = Table(title=f"Universe as of {doc['as_of']} ({s.feed}; run {rid})", title_justify="left")
        for col in ("#", "symbol", "thesis", "risk", "ready", "alignment", *[x.label for x in cfg.timeframes]):
            t.add_column(col, overflow="fold")
        shown = doc["assets"][:top] if top else doc["assets"]
        for a in shown:
            th = a["thesis"]
            per = []
            for x in cfg.timeframes:
                tf = a["timeframes"].get(x.label)
                if tf is None:
                    per.append("skipped")
                    continue
                sc, p = tf["scores"], tf["plan"]
                per.append(f"c {sc['composite']:+.2f} q {sc['quality']:.1f}\nstop {p['stop']:.6g}\n"
                           f"tgt {' / '.join(f'{v:.6g}' for v in p['targets'])}")
            t.add_row(str(a["rank"]), a["symbol"], th["action"], th["risk_band"], th["readiness"],
                      f"{a['alignment']['label']} ({a['alignment']['score']:+.2f})", *per)
        console.print(t)
        for a in shown:
            console.print(f"{a['rank']}. {a['evidence']}", highlight=False, markup=False)
        if doc["rejected"]:
            console.print("not evaluated: " + "; ".join(f"{k}: {v}" for k, v in doc["rejected"].items()))
        console.print(f"written: {path}")
    _autocommit(s, f"universe scan {docs[-1]['as_of']}" + (f" (+{len(docs) - 1} more)" if len(docs) > 1 else ""))
    return 0


# ------------------------------------------------------------------------------------- digest

def cmd_digest(args: Any, s: Any, store: Store, console: Any) -> int:
    from tracer.research import digest

    got = store.latest_universe_doc(args.run_id)
    if got is None:
        print("tracer digest: no universe run yet (run `tracer universe` first)", file=sys.stderr)
        return 1
    rid, doc = got
    top = args.top if args.top is not None else int(doc.get("config", {}).get("top", 0) or 0)
    if args.print_md:
        msgs = digest.discord_messages(doc, top, s.digest_headlines)
    else:
        msgs = digest.telegram_messages(doc, top, s.digest_headlines)
    sep = "\n\n---\n\n" if args.print_md else "\n\n"
    sys.stdout.write(sep.join(msgs) + "\n")
    if args.send:
        return send_digest(doc, s, store, top, args.timeout)
    return 0


def send_digest(doc: dict, s: Any, store: Store, top: int, timeout_s: float) -> int:
    """Queue the digest in the outbox, one row per message and enabled remote channel (secrets redacted,
    like :func:`tracer.notify.outbox.enqueue`), then deliver what is pending."""
    from tracer.notify.format import redact
    from tracer.notify.outbox import remote_channels
    from tracer.research import digest

    chans = remote_channels(s)
    if not chans:
        print("tracer digest: no channel enabled (set TB_DISCORD_WEBHOOK_URL and/or TB_TELEGRAM_BOT_TOKEN + "
              "TB_TELEGRAM_CHAT_ID); nothing sent", file=sys.stderr)
        return 1
    per = {"discord": digest.outbox_discord_messages(doc, top, s.digest_headlines),
           "telegram": digest.telegram_messages(doc, top, s.digest_headlines)}
    secrets = s.secret_values()
    ids = []
    with store.transaction():
        for ch in chans:
            for m in per[ch]:
                ids.append(store.enqueue_notification(ch, "digest", redact(m, secrets), None))
    from tracer.notify.worker import flush
    flush(s, log, timeout_s=timeout_s)
    rows = store.notification_states(ids)
    bad = [r for r in rows if r["status"] != "sent"]
    summary = ", ".join(f"{ch}: {sum(1 for r in rows if r['channel'] == ch and r['status'] == 'sent')}/"
                        f"{sum(1 for r in rows if r['channel'] == ch)} sent" for ch in chans)
    print(f"digest queued and delivered ({summary})", file=sys.stderr)
    return 1 if bad else 0


# --------------------------------------------------------------------------------------- eval

def cmd_eval(args: Any, s: Any, store: Store, console: Any) -> int:
    from rich.table import Table

    summary, path = run_eval(args, s, store)
    t = Table(title=f"Research calls as of {summary['as_of']}: {summary['calls']} calls, "
                    f"{summary['evaluated']} evaluated, {summary['pending']} pending, {summary['no_data']} no data",
              title_justify="left")
    for col in ("group", "value", "calls", "hits", "hit rate", "avg R", "R calls"):
        t.add_column(col)
    rates = summary["hit_rates"]

    def row(g: str, k: str, v: dict) -> None:
        t.add_row(g, k, str(v["calls"]), str(v["hits"]),
                  "-" if v["hit_rate"] is None else f"{v['hit_rate']:.1%}",
                  "-" if v["avg_r"] is None else f"{v['avg_r']:+.2f}", str(v["r_calls"]))
    row("overall", "", rates["overall"])
    cmp = summary["baseline"]          # Buy/Sell calls vs the naive baseline on the same bars and horizons
    row("Buy/Sell calls", "model", cmp["model"])
    row("Buy/Sell calls", "baseline: 20-day trend sign", cmp["baseline"])
    for key in ("action", "risk_band", "readiness", "timeframe"):
        for k, v in rates[f"by_{key}"].items():
            row(key, k, v)
    console.print(t)
    console.print(f"written: {path}")
    _autocommit(s, f"research eval {summary['as_of']}")
    return 0


def run_eval(args: Any, s: Any, store: Store) -> tuple[dict, Path]:
    """Evaluate every open call whose horizon has passed, store the outcomes, and summarise all of them."""
    from tracer.data.factory import make_feed
    from tracer.store import parse_iso
    from tracer.research.evaluation import BASELINE_WINDOW, baseline_comparison, baseline_outcome, hit_rates, outcome, \
        trend_side

    calls = store.open_calls()
    symbols = sorted({c["symbol"] for c in calls}) or ["BTC/USD"]
    probe = make_feed(replace(s, lookback_bars=60, min_bars=1), symbols, store=store, logger=log)
    now = parse_time(args.as_of) if getattr(args, "as_of", None) else _default_now(probe, s)
    due = [c for c in calls if parse_iso(c["horizon_end"]) <= now]
    bars: dict[str, pd.DataFrame] = {}
    if due:
        oldest = min(parse_iso(c["as_of"]) for c in due)
        # and the 20 days before the oldest call: the naive baseline's trend at each call
        hours = int((now - oldest + BASELINE_WINDOW) / timedelta(hours=1)) + 2
        cap = hours if s.feed == "replay" else min(hours, 5000)
        feed = make_feed(replace(s, lookback_bars=cap, min_bars=1), sorted({c["symbol"] for c in due}),
                         store=store, logger=log)
        snap = feed.snapshot(now)
        bars = snap.bars
    no_data = 0
    with store.transaction():
        eid = store.insert_eval_run(now, 0, 0, 0, 0, {})
        for c in due:
            b = bars.get(c["symbol"])
            o = None if b is None else outcome(c["action"], int(c["side"]), float(c["price"]), float(c["risk"]),
                                               float(c["stop"]), float(json.loads(c["targets_json"])[0]),
                                               parse_iso(c["as_of"]), parse_iso(c["horizon_end"]), b)
            if o is None:
                no_data += 1
                continue
            side_b = trend_side(b, parse_iso(c["as_of"])) if c["action"] in ("Buy", "Sell") else None
            ob = None if side_b is None or b is None else baseline_outcome(
                side_b, float(c["price"]), float(c["risk"]), parse_iso(c["as_of"]), parse_iso(c["horizon_end"]), b)
            store.insert_outcome(int(c["id"]), eid, o, side_b if ob is not None else None, ob)
        rows = store.evaluated_rows()
        total = store.count_calls()
        summary = {"as_of": iso(now), "calls": total, "evaluated": len(rows), "newly_evaluated": len(due) - no_data,
                   "pending": len(calls) - len(due), "no_data": no_data, "hit_rates": hit_rates(rows),
                   "baseline": baseline_comparison(rows)}
        store.update_eval_run(eid, total, len(rows), summary["pending"], no_data, summary)
    out = Path(s.research_dir) / "eval_runs"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{_stamp(now)}.json"
    path.write_text(json.dumps(json.loads(to_json({**summary, "eval_run_id": eid})), sort_keys=True, indent=1))
    with store.transaction():
        store.set_eval_artifact(eid, str(path))
    return summary, path
