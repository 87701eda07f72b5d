"""The weekly schedule: the launchd template parses and runs scripts/weekly_optimize.sh weekly; the script
proposes (one file per agent), alerts with the proposal, and applies nothing while auto-apply is off."""
from __future__ import annotations

import json
import os
import plistlib
import sqlite3
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "weekly_optimize.sh"


def test_launchd_template_runs_the_script_weekly():
    pl = plistlib.loads((ROOT / "launchd" / "com.tracerbullet.optimize.plist").read_bytes())
    assert pl["Label"] == "com.tracerbullet.optimize" and pl["WorkingDirectory"] == "__REPO__"
    assert pl["ProgramArguments"] == ["/bin/bash", "__REPO__/scripts/weekly_optimize.sh"]
    assert set(pl["StartCalendarInterval"]) == {"Weekday", "Hour", "Minute"}
    assert pl["StandardOutPath"] == "__LOG_DIR__/optimize.log"


def test_weekly_script_proposes_and_alerts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    env.update(TB_DB_PATH=str(tmp_path / "t.db"), TB_STATE_DIR=str(tmp_path), TB_LOG_DIR=str(tmp_path / "logs"),
               TB_PROPOSED_PARAMS_PATH=str(tmp_path / "cfg" / "proposed_params.json"),
               TB_ACTIVE_PARAMS_PATH=str(tmp_path / "cfg" / "active_params.json"), TB_SENTIMENT_SCORER="lexicon",
               TB_NOTIFY_CONSOLE="true")
    r = subprocess.run(["bash", str(SCRIPT), "--agent", "hybrid", "--", "--symbols", "BTC/USD", "--from", "2022-01-10",
                        "--to", "2022-01-24", "--train-days", "9", "--test-days", "5", "--folds", "1", "--trials", "2",
                        "--out", str(tmp_path / "out")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    prop = json.loads((tmp_path / "cfg" / "proposed_params.hybrid.json").read_text())
    assert prop["agent"] == "hybrid" and prop["code_version"] and prop["data"]["symbols"] == ["BTC/USD"]
    assert "TB_AUTO_APPLY_ENABLED is off" in r.stdout
    assert not (tmp_path / "cfg" / "active_params.json").exists()
    c = sqlite3.connect(tmp_path / "t.db")
    msgs = [m for (m,) in c.execute("SELECT message FROM notifications WHERE kind='params_proposal'")]
    assert msgs and "optimisation proposal for hybrid" in msgs[0] and "out-of-sample" in msgs[0]
