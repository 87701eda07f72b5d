"""Universe scans on the bundled replay: determinism, no look-ahead (truncated data), theses that match
their scores, digests within Discord/Telegram limits (hostile text escaped, delivered through the outbox
to the fake servers over HTTP), the single-asset run, and evaluation counts that reconcile."""
from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from fakes.discord import FakeDiscord
from fakes.telegram import BOT_TOKEN, CHAT_ID, FakeTelegram
from tracer.cli import main
from tracer.config import load_settings
from tracer.data.factory import make_feed
from tracer.data.replay import bundled_dir
from tracer.notify.format import DISCORD_LIMIT, TELEGRAM_LIMIT, escape_discord, utf16_len
from tracer.research import digest
from tracer.research.scan import feed_lookback, scan_universe, universe_doc
from tracer.research.thesis import divergence_side
from tracer.research.universe import load_config, params_hash
from tracer.sentiment.factory import make_scorer

REPO = Path(__file__).resolve().parents[2]
AS_OF = datetime(2022, 3, 1, 12, tzinfo=timezone.utc)
LOG = logging.getLogger("test-research")
HOSTILE = "**@everyone** [click](http://evil.example) `rm -rf` <@123> ~~x~~ _y_ | > # \u202eevil\u202c\nsecond\x07line"


def settings_for(tmp: Path, **env: str):
    base = {"TB_DB_PATH": str(tmp / "state" / "tracer.db"), "TB_RESEARCH_DIR": str(tmp / "research"),
            "TB_LOG_DIR": str(tmp / "logs"), "TB_STATE_DIR": str(tmp / "state"), "TB_NOTIFY_CONSOLE": "false",
            "TB_UNIVERSE_CONFIG": str(REPO / "config" / "universe.yaml"), "TB_NOTIFY_BACKOFF_S": "0.01",
            "TB_NOTIFY_BACKOFF_MAX_S": "0.05", "TB_NOTIFY_TIMEOUT_S": "5",
            "TB_ACTIVE_PARAMS_PATH": str(tmp / "no_active_params.json")}
    base.update(env)
    return base, load_settings(base, dotenv_path=None)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("universe")
    _, s = settings_for(tmp)
    cfg = load_config(s.universe_config)
    scorer = make_scorer(s, LOG)

    def scan(settings, data_dir=None):
        fs = replace(settings, lookback_bars=feed_lookback(cfg, settings.universe_lookback_bars),
                     min_bars=settings.universe_min_bars, data_dir=str(data_dir or ""),
                     headlines_path=str(Path(data_dir) / "headlines.csv") if data_dir else "")
        feed = make_feed(fs, cfg.symbols)
        res = scan_universe(feed, scorer, AS_OF, cfg, settings)
        return json.loads(json.dumps(universe_doc(res, cfg, "replay", params_hash(cfg, settings)), default=str))

    return {"s": s, "cfg": cfg, "scan": scan, "doc": scan(s)}


def test_a_scan_as_of_a_replay_time_is_deterministic(world):
    again = world["scan"](world["s"])
    assert again["ranking"] == world["doc"]["ranking"] and len(again["ranking"]) == 9
    assert again == world["doc"]
    assert world["doc"]["as_of"] == "2022-03-01T12:00:00Z"


def test_the_1h_view_of_a_scan_is_the_agents_signal(world):
    """Same evaluate, same bars (TB_LOOKBACK_BARS of them), same headlines: the universe's 1h scores for
    BTC/USD equal those of the signal the agents compute at that time."""
    from tracer.research.scan import score_headlines
    from tracer.signals.evaluate import EvalParams, evaluate

    s = world["s"]
    snap = make_feed(s, ["BTC/USD"]).snapshot(AS_OF)
    sig = evaluate("BTC/USD", snap.bars["BTC/USD"], score_headlines("BTC/USD", snap.headlines, make_scorer(s, LOG)),
                   AS_OF, EvalParams.from_settings(s))
    got = next(a for a in world["doc"]["assets"] if a["symbol"] == "BTC/USD")["timeframes"]["1h"]["scores"]
    for k in ("price_score", "narrative", "divergence", "quality", "conviction", "volume_z", "atr"):
        assert got[k] == getattr(sig, k), k
    assert got["action"] == sig.action.value and got["bars"] == len(snap.bars["BTC/USD"]) == s.lookback_bars


def test_no_bar_or_headline_after_the_scan_time_influences_it(world, tmp_path):
    """Cut every candle file after the scan time (bars closing later) and every later headline,
    and also distort what stays after it in a second copy: the scan is the same."""
    src = bundled_dir()
    cut = tmp_path / "cut"
    cut.mkdir()
    for f in src.glob("candles_1h_*.csv"):
        df = pd.read_csv(f)
        ts = pd.to_datetime(df["timestamp"], utc=True)
        df[ts + pd.Timedelta(hours=1) <= pd.Timestamp(AS_OF)].to_csv(cut / f.name, index=False)
    h = pd.read_csv(src / "headlines.csv")
    pub = pd.to_datetime(h["published_at"], utc=True)
    h[pub <= pd.Timestamp(AS_OF)].to_csv(cut / "headlines.csv", index=False)
    truncated = world["scan"](world["s"], cut)
    assert truncated["ranking"] == world["doc"]["ranking"]
    assert truncated["assets"] == world["doc"]["assets"]
    # the future rewritten: prices halved and alarming headlines after the scan time
    fut = tmp_path / "future"
    fut.mkdir()
    for f in src.glob("candles_1h_*.csv"):
        df = pd.read_csv(f)
        later = pd.to_datetime(df["timestamp"], utc=True) + pd.Timedelta(hours=1) > pd.Timestamp(AS_OF)
        for c in ("open", "high", "low", "close"):
            df.loc[later, c] = df.loc[later, c] * 0.5
        df.to_csv(fut / f.name, index=False)
    extra = pd.DataFrame({"published_at": ["2022-03-01T12:00:01Z", "2022-03-01T12:30:00Z"],
                          "source": ["x", "x"], "title": ["Bitcoin crashes, Ethereum hacked, Solana down",
                                                          "XRP banned, Dogecoin collapses, Cardano fraud"]})
    cols = list(h.columns)
    pd.concat([h, extra.reindex(columns=cols)]).to_csv(fut / "headlines.csv", index=False)
    assert world["scan"](world["s"], fut)["assets"] == world["doc"]["assets"]


def test_theses_and_evidence_lines_match_their_scores(world):
    n_buy = 0
    for a in world["doc"]["assets"]:
        th, tfs = a["thesis"], a["timeframes"]
        dirs = [t["scores"]["direction"] for t in tfs.values()]
        for tf, t in tfs.items():
            sc = t["scores"]
            div = divergence_side(type("S", (), {"headline_count": sc["headline_count"], "divergence": sc["divergence"],
                                                 "divergence_trigger": sc["divergence_trigger"]})())
            if th["action"] == "Buy":
                assert div >= 0, f"Buy with a bearish divergence: {a['symbol']} {tf}"
                assert sc["direction"] >= 0
            if th["action"] == "Sell":
                assert div <= 0 and sc["direction"] <= 0
            assert f"on {tf} ({sc['price_score']:+.2f})" in a["evidence"]
            assert ("than the tape on " + tf) in a["evidence"] if div else ("than the tape on " + tf) not in a["evidence"]
            p = t["plan"]
            side = p["side"]
            assert side * (p["targets"][0] - p["price"]) > 0 > side * (p["stop"] - p["price"])
        if th["action"] == "Buy":
            n_buy += 1
            assert sum(d > 0 for d in dirs) * 2 > len(dirs) and min(dirs) >= 0
        if th["action"] == "Sell":
            assert sum(d < 0 for d in dirs) * 2 > len(dirs) and max(dirs) <= 0
        assert a["evidence"].startswith(a["symbol"] + ": ")
        assert a["evidence"].endswith(f"→ {th['action']} ({th['risk_band']} risk, {th['readiness']}).")
    assert n_buy >= 1          # 2022-03-01 12:00: ETH/USD and LINK/USD are Buy calls


def hostile_doc(doc: dict, long: bool = False) -> dict:
    d = json.loads(json.dumps(doc))
    for a in d["assets"]:
        a["headline"] = {"title": HOSTILE + (" very long" * 600 if long else ""), "source": "evil`src`",
                         "at": "2022-03-01T11:00:00Z", "score": -0.5}
    return d


def assert_whole_lines(messages: list[str], full_lines: list[str]):
    for m in messages:
        for line in m.split("\n"):
            assert line == "" or line in full_lines or line.endswith("…"), f"cut line: {line[:80]!r}"


def test_digest_fits_discord_and_telegram_with_the_full_universe_and_escapes_hostile_text(world):
    doc = hostile_doc(world["doc"])
    md = digest.discord_messages(doc)
    assert len(md) >= 2                                           # 9 assets do not fit one Discord message
    assert all(utf16_len(m) <= DISCORD_LIMIT for m in md)
    full_md = "\n\n".join(digest.blocks(doc, True)).split("\n")
    assert_whole_lines(md, full_md)
    assert sum(m.count("**") for m in md) >= 2 * 10               # header + 9 asset titles stay bold
    joined = "\n".join(md)
    for a in doc["assets"]:
        assert a["symbol"] in joined
    assert "@everyone" in joined and "\\*\\*@everyone\\*\\*" in joined and "\\[click\\](http://evil.example)" in joined
    assert "\\`rm -rf\\`" in joined and "\\<@123\\>" in joined and "\u202e" not in joined and "\x07" not in joined
    tg = digest.telegram_messages(doc)
    assert all(utf16_len(m) <= TELEGRAM_LIMIT for m in tg) and len(tg) >= 1
    assert_whole_lines(tg, "\n\n".join(digest.blocks(doc, False)).split("\n"))
    tj = "\n".join(tg)
    assert "**@everyone** [click](http://evil.example)" in tj       # shown literally: no parse_mode
    assert "\u202e" not in tj and "\x07" not in tj and "second line" in tj and "# evil second" in tj
    # every line of each block lands in exactly one message, in order
    assert [l for m in tg for l in m.split("\n") if l] == [l for l in "\n\n".join(digest.blocks(doc, False)).split("\n") if l]


def test_an_overlong_line_is_shortened_not_split_across_messages(world):
    doc = hostile_doc(world["doc"], long=True)
    for msgs, limit in ((digest.discord_messages(doc), DISCORD_LIMIT), (digest.telegram_messages(doc), TELEGRAM_LIMIT),
                        (digest.outbox_discord_messages(doc), DISCORD_LIMIT)):
        assert all(utf16_len(m) <= limit for m in msgs)
    for m in digest.outbox_discord_messages(doc):
        assert utf16_len(escape_discord(m)) <= DISCORD_LIMIT       # still fits after the sender escapes it


def cli(env: dict, monkeypatch, *args: str) -> int:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    empty = Path(env["TB_STATE_DIR"]).parent / "empty.env"     # no .env but the test's (a named one must exist)
    empty.touch()
    return main(["--env-file", str(empty), *args])


def test_single_asset_run_writes_a_run_row_its_signal_and_files(tmp_path, monkeypatch, capsys):
    env, s = settings_for(tmp_path)
    assert cli(env, monkeypatch, "run", "--symbol", "BTC/USD", "--as-of", "2022-03-01T12:00Z") == 0
    out = capsys.readouterr().out
    assert "Signal" in out and "price score" in out and "Relevant headlines" in out
    assert cli(env, monkeypatch, "run", "--symbol", "btc", "--as-of", "2022-03-01T12:00Z") == 0   # same pass again
    con = sqlite3.connect(s.db_path)
    runs = con.execute("SELECT id, agent, clock FROM runs").fetchall()
    assert runs == [(1, "research:BTC/USD", "2022-03-01T12:00:00Z")]
    sigs = con.execute("SELECT symbol, decision, price_score, volume_z, narrative, divergence, reason FROM signals").fetchall()
    assert len(sigs) == 1 and sigs[0][0] == "BTC/USD" and sigs[0][1] == "research"
    doc = json.loads((tmp_path / "research" / "runs" / "1.json").read_text())
    assert doc["symbol"] == "BTC/USD" and doc["scores"]["price_score"] == pytest.approx(sigs[0][2])
    assert doc["inputs"]["last_bar"] == "2022-03-01T11:00:00Z"
    bars = pd.read_csv(tmp_path / "research" / "bars" / "1.csv")
    assert len(bars) == doc["inputs"]["bars"] and bars["ts"].iloc[-1].startswith("2022-03-01 11:00")


def test_universe_series_then_eval_over_the_bundled_period_reconciles(tmp_path, monkeypatch, capsys):
    env, s = settings_for(tmp_path, TB_UNIVERSE_GIT_AUTOCOMMIT="true")
    assert cli(env, monkeypatch, "universe", "--from", "2021-11-14T00:00Z", "--to", "2022-07-31T00:00Z",
               "--every", "7d") == 0
    n_scans = 38
    con = sqlite3.connect(s.db_path)
    con.row_factory = sqlite3.Row
    assert con.execute("SELECT COUNT(*) FROM universe_runs").fetchone()[0] == n_scans
    calls = con.execute("SELECT COUNT(*) FROM research_calls").fetchone()[0]
    files = sorted((tmp_path / "research" / "universe_runs").glob("*.json"))
    assert len(files) == n_scans
    docs = [json.loads(f.read_text()) for f in files]
    # one call per asset and evaluated timeframe; early scans lack 60 complete daily bars, so no 1d call
    assert calls == sum(len(a["timeframes"]) for d in docs for a in d["assets"])
    assert all(len(a["timeframes"]) + len(a["skipped"]) == 3 for d in docs for a in d["assets"])
    assert docs[0]["assets"][0]["skipped"]["1d"].startswith("insufficient_bars")
    assert calls > n_scans * 9 * 2
    metrics = pd.read_csv(tmp_path / "research" / "universe_runs" / "metrics.csv")
    assert len(metrics) == n_scans * 9
    assert (tmp_path / "research" / ".git").is_dir()                     # autocommitted, its own repository
    log = subprocess.run(["git", "-C", str(tmp_path / "research"), "log", "--format=%s"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert log == ["universe scan 2022-07-31T00:00:00Z (+37 more)"]
    tracked = subprocess.run(["git", "-C", str(tmp_path / "research"), "ls-files"], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert "universe_runs/metrics.csv" in tracked and len(tracked) == n_scans + 1

    assert cli(env, monkeypatch, "eval") == 0
    out = capsys.readouterr().out
    assert "hit rate" in out
    ev = con.execute("SELECT * FROM eval_runs ORDER BY id DESC LIMIT 1").fetchone()
    summary = json.loads(ev["summary_json"])
    later = con.execute("SELECT COUNT(*) FROM research_calls WHERE horizon_end > ?", (summary["as_of"],)).fetchone()[0]
    assert summary["as_of"] == "2022-08-01T00:00:00Z"                      # the close of the last bundled bar
    assert later > 0 and summary["calls"] == calls and summary["pending"] == later and summary["no_data"] == 0
    assert summary["evaluated"] + summary["pending"] + summary["no_data"] == calls
    hr = summary["hit_rates"]
    assert hr["overall"]["calls"] == summary["evaluated"] == con.execute(
        "SELECT COUNT(*) FROM research_outcomes").fetchone()[0]
    for g in ("action", "risk_band", "readiness", "timeframe"):
        assert sum(v["calls"] for v in hr[f"by_{g}"].values()) == hr["overall"]["calls"]
        assert sum(v["hits"] for v in hr[f"by_{g}"].values()) == hr["overall"]["hits"]
    for act in ("Buy", "Sell", "Watch"):
        n = con.execute("SELECT COUNT(*), COALESCE(SUM(o.hit), 0) FROM research_calls c JOIN research_outcomes o "
                        "ON o.call_id=c.id WHERE c.action=?", (act,)).fetchone()
        got = hr["by_action"].get(act, {"calls": 0, "hits": 0})
        assert (got["calls"], got["hits"]) == (n[0], n[1])
    made = {r[0]: r[1] for r in con.execute("SELECT action, COUNT(*) FROM research_calls WHERE horizon_end <= ? "
                                           "GROUP BY action", (summary["as_of"],))}
    assert {k: v["calls"] for k, v in hr["by_action"].items()} == made
    # the naive baseline (sign of the 20-day trend) on the same Buy/Sell calls, bars and horizons
    cmp = summary["baseline"]
    with_b = con.execute("SELECT c.side, c.price, c.risk, o.exit_price, o.hit, o.baseline_side, o.baseline_hit, "
                         "o.baseline_r FROM research_calls c JOIN research_outcomes o ON o.call_id=c.id "
                         "WHERE c.action IN ('Buy','Sell') AND o.baseline_hit IS NOT NULL").fetchall()
    assert cmp["calls"] == len(with_b) > 0 and "20-day" in cmp["rule"]
    assert cmp["model"]["hits"] == sum(x["hit"] for x in with_b)
    assert cmp["baseline"]["hits"] == sum(x["baseline_hit"] for x in with_b)
    for x in with_b:
        assert x["baseline_side"] in (1, -1)
        assert x["baseline_r"] == pytest.approx(x["baseline_side"] * (x["exit_price"] - x["price"]) / x["risk"])
        assert x["baseline_hit"] == int(x["baseline_r"] > 0)
    assert "baseline: 20-day trend sign" in out
    # outcomes only use bars after the call: every exit is at the horizon, after the call
    bad = con.execute("SELECT COUNT(*) FROM research_calls c JOIN research_outcomes o ON o.call_id=c.id "
                      "WHERE o.exit_ts <= c.as_of OR o.exit_ts > c.horizon_end").fetchone()[0]
    assert bad == 0
    # R: Buy/Sell only, move / risk
    r = con.execute("SELECT c.action, c.side, c.price, c.risk, o.exit_price, o.r_multiple, o.hit FROM research_calls c "
                    "JOIN research_outcomes o ON o.call_id=c.id").fetchall()
    for x in r:
        if x["action"] == "Watch":
            assert x["r_multiple"] is None and x["hit"] == int(abs(x["exit_price"] - x["price"]) < x["risk"])
        else:
            assert x["r_multiple"] == pytest.approx(x["side"] * (x["exit_price"] - x["price"]) / x["risk"])
            assert x["hit"] == int(x["r_multiple"] > 0)
    assert len(list((tmp_path / "research" / "eval_runs").glob("*.json"))) == 1
    log = subprocess.run(["git", "-C", str(tmp_path / "research"), "log", "--format=%s"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert log[0] == "research eval 2022-08-01T00:00:00Z"
    # a second evaluation adds nothing and counts the same
    assert cli(env, monkeypatch, "eval") == 0
    s2 = json.loads(con.execute("SELECT summary_json FROM eval_runs ORDER BY id DESC LIMIT 1").fetchone()[0])
    assert s2["hit_rates"] == hr and s2["newly_evaluated"] == 0


def test_digest_send_goes_through_the_outbox_to_discord_and_telegram(tmp_path, monkeypatch, capsys):
    with FakeDiscord() as dc, FakeTelegram() as tg:
        env, s = settings_for(tmp_path, TB_DISCORD_WEBHOOK_URL=dc.url, TB_TELEGRAM_BOT_TOKEN=BOT_TOKEN,
                              TB_TELEGRAM_CHAT_ID=str(CHAT_ID), TB_TELEGRAM_BASE_URL=tg.base_url)
        assert cli(env, monkeypatch, "universe", "--as-of", "2022-03-01T12:00Z") == 0
        art = tmp_path / "research" / "universe_runs" / "20220301T1200Z.json"
        first = art.read_bytes()
        assert cli(env, monkeypatch, "universe", "--as-of", "2022-03-01T12:00Z") == 0   # the same scan again
        assert art.read_bytes() == first                                                # byte-identical
        assert len(pd.read_csv(art.parent / "metrics.csv")) == 9                        # rows not repeated
        con = sqlite3.connect(s.db_path)
        assert con.execute("SELECT COUNT(*) FROM universe_runs").fetchone()[0] == 1
        assert con.execute("SELECT COUNT(*) FROM research_calls").fetchone()[0] == 9 * 3   # asset x timeframe
        doc = json.loads(con.execute("SELECT doc_json FROM universe_runs").fetchone()[0])
        with con:
            con.execute("UPDATE universe_runs SET doc_json=?", (json.dumps(hostile_doc(doc)),))
        capsys.readouterr()
        assert cli(env, monkeypatch, "digest", "--send") == 0
        printed = capsys.readouterr().out
        assert "Tracer Bullet digest" in printed
        rows = con.execute("SELECT channel, status FROM notifications WHERE kind='digest'").fetchall()
        assert rows and all(st == "sent" for _, st in rows)
        sent_d, sent_t = dc.contents(), tg.texts()
        assert len(sent_d) == sum(1 for c, _ in rows if c == "discord") >= 2
        assert len(sent_t) == sum(1 for c, _ in rows if c == "telegram") >= 1
        assert all(utf16_len(m) <= DISCORD_LIMIT for m in sent_d)
        assert all(utf16_len(m) <= TELEGRAM_LIMIT for m in sent_t)
        assert not any(m.startswith("(1/") for m in sent_d + sent_t)       # never re-split by the worker
        assert any("\\*\\*@everyone\\*\\*" in m for m in sent_d)
        assert any("**@everyone**" in m for m in sent_t)
        assert BOT_TOKEN not in "".join(sent_d + sent_t)
        assert cli(env, monkeypatch, "digest", "--print-md") == 0
        assert "**Tracer Bullet digest**" in capsys.readouterr().out


def test_universe_top_carries_into_the_digest_and_plans_name_the_timeframe_signal(tmp_path, monkeypatch, capsys):
    """`universe --top 3` then `digest`: the same 3 assets; each plan line names its timeframe's own signal
    first, so a conditional plan against it reads as a wait for the turn."""
    env, s = settings_for(tmp_path)
    assert cli(env, monkeypatch, "universe", "--as-of", "2022-03-01T12:00Z", "--top", "3") == 0
    table = capsys.readouterr().out
    shown = [ln.split(".", 1)[1].split(":", 1)[0].strip() for ln in table.splitlines() if ln[:2] in ("1.", "2.", "3.", "4.")]
    assert len(shown) == 3
    assert cli(env, monkeypatch, "digest") == 0
    out = capsys.readouterr().out
    ranked = [ln for ln in out.splitlines() if ln[:1] in "⚪🟢🔴" and ". " in ln]
    assert len(ranked) == 3 and "showing top 3" in out
    assert [ln.split(". ", 1)[1].split(" — ")[0] for ln in ranked] == shown
    doc = json.loads(sqlite3.connect(s.db_path).execute("SELECT doc_json FROM universe_runs").fetchone()[0])
    for a in doc["assets"][:3]:
        for tf, t in a["timeframes"].items():
            side = "long" if t["plan"]["side"] > 0 else "short"
            assert f"• {tf}: signal {t['scores']['action']} now; plan {side}" in out


def _bundled_1h(symbol: str) -> pd.DataFrame:
    df = pd.read_csv(bundled_dir() / f"candles_1h_{symbol.replace('/USD', 'USDT')}.csv")
    df.index = pd.to_datetime(df.pop("timestamp"), utc=True)
    return df


def test_every_timeframes_call_is_priced_at_the_last_hourly_close_at_the_call(world):
    """A 12:00 scan's 4h and 1d calls are priced at the 1h close at 12:00, not at their last complete bar's
    close (00:00 for 1d): the move between them happened before the call, and its thesis already saw it."""
    bad = []
    for a in world["doc"]["assets"]:
        close_at_call = float(_bundled_1h(a["symbol"]).loc[pd.Timestamp(AS_OF) - pd.Timedelta(hours=1), "close"])
        for tf, t in a["timeframes"].items():
            if t["plan"]["price"] != pytest.approx(close_at_call, rel=1e-12):
                bad.append(f"{a['symbol']} {tf}: P={t['plan']['price']} vs the close at the call {close_at_call}")
    assert not bad, f"{len(bad)} calls priced before the call, e.g. {bad[:3]}"


def test_a_call_after_which_the_price_never_moves_scores_no_move(world):
    """The bars after the call held flat at the call-time close: no outcome may show a move."""
    from tracer.research.evaluation import outcome

    scored = []
    for a in world["doc"]["assets"]:
        b = _bundled_1h(a["symbol"])
        p_call = float(b.loc[pd.Timestamp(AS_OF) - pd.Timedelta(hours=1), "close"])
        later = b.index >= pd.Timestamp(AS_OF)
        for c in ("open", "high", "low", "close"):
            b.loc[later, c] = p_call
        if a["thesis"]["action"] not in ("Buy", "Sell"):
            continue
        for tf, t in a["timeframes"].items():
            p = t["plan"]
            o = outcome(a["thesis"]["action"], p["side"], p["price"], p["risk"], p["stop"], p["targets"][0], AS_OF,
                        datetime.fromisoformat(str(p["horizon_end"]).replace("Z", "+00:00")), b)
            if o is not None and (o.move != 0.0 or o.mfe_r != 0.0 or o.mae_r != 0.0):
                scored.append(f"{a['symbol']} {tf} {a['thesis']['action']}: hit={o.hit} R={o.r_multiple:+.2f}")
    assert not scored, f"flat after the call, yet scored: {scored[:4]}"
