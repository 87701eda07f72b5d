"""``tracer backtest``'s settings: the same TB_* variables as the replay agent, TB_HEADLINES_PATH included (the same
.env and window must run the same strategy: the agent trades on the news, so must the backtest that checks it)."""
from __future__ import annotations

import csv
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from data.test_gaps import FIXTURE, env, run_agent
from tracer.cli import main
from tracer.config import load_settings

WINDOW = {"TB_REPLAY_START": "2021-08-12T00:00:00Z", "TB_REPLAY_END": "2021-08-14T12:00:00Z"}


def bearish_headlines(path: Path) -> Path:
    """Hourly headlines over the fixture's window that the sentiment scorer reads as a crash."""
    t = datetime(2021, 8, 11, tzinfo=timezone.utc)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["published_at", "source", "title"])
        k = 0
        while t < datetime(2021, 8, 15, tzinfo=timezone.utc):
            for coin in ("Bitcoin", "Ethereum", "Solana"):
                k += 1
                w.writerow([t.strftime("%Y-%m-%dT%H:%M:%SZ"), "wire",
                            f"{coin} crashes as exchange hack wipes out investors, panic selling and fear #{k}"])
            t += timedelta(hours=1)
    return path


def _entries(trades_csv: Path) -> list[str]:
    with open(trades_csv) as f:
        return sorted(r["entry_order_id"] for r in csv.DictReader(f))


def _use_env(monkeypatch, e: dict[str, str]) -> None:
    for k in list(os.environ):
        if k.startswith("TB_"):
            monkeypatch.delenv(k)
    for k, v in e.items():
        monkeypatch.setenv(k, v)


def test_backtest_reads_tb_headlines_path_like_the_replay(tmp_path, monkeypatch):
    heads = bearish_headlines(tmp_path / "news.csv")
    # the agent replaying the fixture folder (no headlines.csv there) with TB_HEADLINES_PATH
    e = env(tmp_path / "a", TB_HEADLINES_PATH=str(heads), **WINDOW)
    db = run_agent(load_settings(e, None))
    replay = sorted(o["client_order_id"] for o in db["orders"] if o["purpose"] == "entry")
    # the control: without the news the agent trades otherwise
    db0 = run_agent(load_settings(env(tmp_path / "b", **WINDOW), None))
    assert replay != sorted(o["client_order_id"] for o in db0["orders"] if o["purpose"] == "entry")
    _use_env(monkeypatch, e)
    out = tmp_path / "bt"
    rc = main(["backtest", "--agent", "hybrid", "--data", str(FIXTURE), "--symbols", "BTC/USD,ETH/USD,SOL/USD",
               "--from", WINDOW["TB_REPLAY_START"], "--to", db["runs"][-1]["clock"], "--out", str(out), "--no-plot"])
    assert rc == 0
    assert _entries(out / "trades.csv") == replay


def test_a_missing_headlines_file_is_refused_not_run_price_only(tmp_path, monkeypatch, capsys):
    _use_env(monkeypatch, env(tmp_path, TB_HEADLINES_PATH=str(tmp_path / "typo.csv"), **WINDOW))
    argv = ["backtest", "--data", str(FIXTURE), "--out", str(tmp_path / "bt"), "--no-plot"]
    assert main(argv) == 2
    assert f"TB_HEADLINES_PATH={tmp_path / 'typo.csv'}: no such file" in capsys.readouterr().err
    assert main(argv + ["--headlines", str(tmp_path / "other.csv")]) == 2
    assert "--headlines" in capsys.readouterr().err and not (tmp_path / "bt").exists()


def test_a_misspelt_variable_in_env_is_warned_about(tmp_path, monkeypatch, capsys):
    """README: "An unknown TB_ variable is warned about". The user meant TB_MAX_POSITION_PCT=0.02; the backtest ran
    at the default without a word."""
    _use_env(monkeypatch, env(tmp_path, **WINDOW))
    (tmp_path / "my.env").write_text("TB_MAX_POSITON_PCT=0.02\n")
    assert main(["--env-file", str(tmp_path / "my.env"), "backtest", "--data", str(FIXTURE), "--out",
                 str(tmp_path / "bt"), "--no-plot"]) == 0
    assert ("tracer backtest: warning: unknown variable TB_MAX_POSITON_PCT (ignored; check the spelling against "
            ".env.example)") in capsys.readouterr().err


def test_a_bad_from_date_exits_2_like_every_other_usage_error(tmp_path, monkeypatch, capsys):
    _use_env(monkeypatch, env(tmp_path, **WINDOW))
    with pytest.raises(SystemExit) as e:
        main(["backtest", "--data", str(FIXTURE), "--from", "yesterday", "--out", str(tmp_path / "bt"), "--no-plot"])
    assert e.value.code == 2
    assert "tracer backtest: --from 'yesterday' is not an ISO 8601 date/time" in capsys.readouterr().err
