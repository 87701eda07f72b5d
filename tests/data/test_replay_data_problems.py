"""A replay that lacks data for what it must trade is a configuration error that names its variable, found by
`tracer check-config` (the start script's check) and by the agent before it starts: exit 2 and a message, never a
traceback that the watchdog restarts three times and gives up on."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envs import agent_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("var,value,named", [("TB_SYMBOLS", "BTC/USD,PEPE/USD", "TB_SYMBOLS: no candle file for PEPE/USD"),
                                             ("TB_FUTURES_SYMBOLS", "BTC/USD,PEPE/USD", "TB_FUTURES_SYMBOLS"),
                                             ("TB_DATA_DIR", "no_such_dir", "TB_DATA_DIR=")])
def test_missing_replay_data_names_the_variable(tmp_path, var, value, named):
    env = agent_env(tmp_path, **{var: str(tmp_path / value) if var == "TB_DATA_DIR" else value})
    cc = subprocess.run([sys.executable, "-m", "tracer.cli", "check-config"], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=120)
    assert cc.returncode == 2 and named in cc.stderr and "Traceback" not in cc.stderr, cc.stderr[-500:]
    for script, concerned in (("scripts/hybrid_crypto_trader.py", var != "TB_FUTURES_SYMBOLS"),
                              ("scripts/high_risk_futures_agent.py", var != "TB_SYMBOLS")):
        run = subprocess.run([sys.executable, script, "--once"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
        if concerned:
            assert run.returncode == 2 and "refusing to start" in run.stderr and named in run.stderr, run.stderr[-500:]
            assert "Traceback" not in run.stderr
        else:                       # the other agent's symbols do not stop this one
            assert run.returncode == 0, run.stderr[-500:]


def test_an_unreadable_candle_file_is_refused_naming_it_not_a_traceback(tmp_path):
    """A candle file that does not parse (here as an interrupted download used to leave it: a torn row with the
    next run's row appended to it) stops the agent at start with exit 2 and the file named, like a missing one."""
    data = tmp_path / "candles"
    shutil.copytree(ROOT / "tests" / "data" / "gap_2021_08_13", data)
    path = data / "candles_1h_BTCUSDT.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:40]) + lines[40][:24] + "".join(lines[41:]))
    env = agent_env(tmp_path, TB_DATA_DIR=str(data), TB_SYMBOLS="BTC/USD,ETH/USD,SOL/USD")
    run = subprocess.run([sys.executable, "scripts/hybrid_crypto_trader.py", "--once"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "refusing to start" in run.stderr and str(path) in run.stderr, run.stderr[-800:]
    assert "line 41" in run.stderr and "Traceback" not in run.stderr


def test_check_config_refuses_a_headlines_path_the_agents_refuse(tmp_path):
    """README: "a TB_HEADLINES_PATH that names a missing file is refused" (the agents exit 2 at start); check-config
    passed it, and the start script's agents exited at once, restarted and given up by the watchdog loops."""
    env = agent_env(tmp_path, TB_HEADLINES_PATH=str(tmp_path / "data" / "my_headlines.csv"))
    r = subprocess.run([sys.executable, "-m", "tracer.cli", "check-config"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-300:]
    assert f"TB_HEADLINES_PATH={tmp_path / 'data' / 'my_headlines.csv'}: no such file" in r.stderr, r.stderr[-300:]
