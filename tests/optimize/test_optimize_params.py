"""Promotion of optimised parameters: guard rails refuse with a reason, promotions are recorded and
alerted, the promoted set is applied under explicit variables, rollback restores the exact previous set."""
from __future__ import annotations

import json
import sqlite3

import pytest

from tracer.config import load_settings
from tracer.store import Store
from tracer.optimize import params as pm


@pytest.fixture()
def env(tmp_path):
    # the optimiser's search space is the seed model's (tracer/optimize/params.py): phase1c lies inside it
    return {"TB_PROFILE": "phase1c", "TB_ACTIVE_PARAMS_PATH": str(tmp_path / "active.json"),
            "TB_DB_PATH": str(tmp_path / "t.db"),
            "TB_PROPOSED_PARAMS_PATH": str(tmp_path / "proposed.json"),
            "TB_DISCORD_WEBHOOK_URL": "https://discord.invalid/api/webhooks/1/x"}


def load(env, **extra):
    return load_settings(dict(env, **extra), dotenv_path=None)


def proposal(s, agent="hybrid", oos=1.0, cur_oos=0.5, **changes):
    cur = pm.current_values(s, agent)
    params = dict(cur)
    params.update(changes)
    return {"agent": agent, "code_version": pm.code_version(), "params": params, "current": cur,
            "metrics": {"objective": {"in_sample": 2.0, "out_of_sample": oos, "current_out_of_sample": cur_oos},
                        "in_sample": {"total_return": 0.05, "sharpe": 2.0, "max_drawdown": 0.02, "trades": 30},
                        "out_of_sample": {"total_return": 0.01, "sharpe": 1.0, "max_drawdown": 0.01, "trades": 10},
                        "current_out_of_sample": {"total_return": 0.0, "sharpe": 0.5, "max_drawdown": 0.01,
                                                  "trades": 12}}}


def test_guard_rails_accept_a_better_bounded_proposal(env):
    s = load(env)
    p = proposal(s, TB_MIN_SIGNAL_QUALITY=1.5, TB_STOP_ATR_MULT=2.5)
    assert pm.guard_rails(p, pm.current_values(s, "hybrid"), s, head=pm.code_version()) == []


def test_worse_out_of_sample_is_refused_with_a_reason(env):
    s = load(env)
    for oos, cur in ((0.2, 0.5), (0.55, 0.5)):       # worse, and better but within the 0.1 margin
        reasons = pm.guard_rails(proposal(s, oos=oos, cur_oos=cur), pm.current_values(s, "hybrid"), s)
        assert len(reasons) == 1 and "out of sample the proposal is not better" in reasons[0]
        assert "TB_AUTO_APPLY_MIN_IMPROVEMENT" in reasons[0]
    st = Store(s.db_path)
    o = pm.promote(st, s, proposal(s, oos=0.2, cur_oos=0.5), actor="test")
    assert not o.ok and "not better" in o.message
    assert st.promotions() == [] and pm.active_sets(s.active_params_path) == {}


def test_a_parameter_beyond_its_bound_is_refused(env):
    s = load(env)
    cur = pm.current_values(s, "hybrid")
    out = pm.guard_rails(proposal(s, TB_MIN_SIGNAL_QUALITY=9.0), cur, s)
    assert out == ["TB_MIN_SIGNAL_QUALITY=9.0: outside its bound [0, 6]"]
    # inside the range but a bigger step than TB_AUTO_APPLY_MAX_CHANGE (0.25 of the 0..6 range = 1.5)
    out = pm.guard_rails(proposal(s, TB_MIN_SIGNAL_QUALITY=3.0), cur, s)
    assert len(out) == 1 and "TB_MIN_SIGNAL_QUALITY: change 1 -> 3" in out[0] and "exceeds its bound 1.5" in out[0]
    assert pm.guard_rails(proposal(s, TB_NOT_TUNABLE=1.0), cur, s) == [
        "TB_NOT_TUNABLE: not a tunable parameter of the hybrid agent (profile phase1c)"]
    # a proposal made against other parameters than those in force now is stale
    p = proposal(s)
    p["current"]["TB_STOP_ATR_MULT"] = 3.0
    assert "baseline is stale" in pm.guard_rails(p, cur, s)[0]


def test_promote_records_alerts_and_applies_under_explicit_variables(env):
    s = load(env)
    st = Store(s.db_path)
    o = pm.promote(st, s, proposal(s, TB_MIN_SIGNAL_QUALITY=1.75, TB_TRAIL_PCT=0.06), actor="alice")
    assert o.ok, o.message
    row = st.promotions("hybrid")[-1]
    assert row["action"] == "promote" and row["actor"] == "alice" and json.loads(row["previous_json"]) == {}
    assert json.loads(row["params_json"])["TB_MIN_SIGNAL_QUALITY"] == 1.75
    alerts = st.conn.execute("SELECT kind, message FROM notifications WHERE channel='discord'").fetchall()
    assert [a["kind"] for a in alerts] == ["params_promoted"] and "TB_MIN_SIGNAL_QUALITY=1.75" in alerts[0]["message"]
    s2 = load(env)
    assert s2.min_signal_quality == 1.75 and s2.trail_pct == 0.06            # above the profile (phase1c: 1.0)
    assert load(env, TB_MIN_SIGNAL_QUALITY="1.25").min_signal_quality == 1.25  # an explicit variable wins
    assert load(env, TB_PROFILE="conservative").min_signal_quality == 1.75    # the promoted set beats a profile
    st.close()


def test_rollback_restores_the_exact_previous_set(env):
    s = load(env)
    st = Store(s.db_path)
    assert pm.promote(st, s, proposal(s, TB_MIN_SIGNAL_QUALITY=1.75, TB_TRAIL_PCT=0.055), actor="t").ok
    first = pm.active_sets(s.active_params_path)["hybrid"]
    s = load(env)
    assert pm.promote(st, s, proposal(s, TB_MIN_SIGNAL_QUALITY=2.5, TB_MAX_HOLD_H=42.0), actor="t").ok
    assert pm.active_sets(s.active_params_path)["hybrid"] != first
    o = pm.rollback(st, s, "hybrid", actor="t")
    assert o.ok
    assert pm.active_sets(s.active_params_path)["hybrid"] == first        # exactly, value for value
    s = load(env)
    assert pm.current_values(s, "hybrid") == first
    assert pm.rollback(st, s, "hybrid", actor="t").ok                      # and once more: no promoted set
    assert pm.active_sets(s.active_params_path) == {}
    assert load(env).min_signal_quality == 1.0
    assert not pm.rollback(st, s, "hybrid", actor="t").ok
    actions = [r["action"] for r in st.promotions("hybrid")]
    assert actions == ["promote", "promote", "rollback", "rollback"]
    kinds = [r[0] for r in st.conn.execute("SELECT kind FROM notifications WHERE channel='discord' ORDER BY id")]
    assert kinds == ["params_promoted", "params_promoted", "params_rollback", "params_rollback"]
    st.close()


def test_auto_apply_needs_enabled_no_kill_switch_and_guard_rails(env):
    s = load(env)
    st = Store(s.db_path)
    good = proposal(s, TB_STOP_ATR_MULT=2.25)
    o = pm.promote(st, s, good, actor="auto", auto=True)
    assert not o.ok and o.reasons == ["TB_AUTO_APPLY_ENABLED is off"]
    s_kill = load(env, TB_AUTO_APPLY_ENABLED="1", TB_AUTO_APPLY_KILL="1")
    o = pm.promote(st, s_kill, good, actor="auto", auto=True)
    assert not o.ok and o.reasons == ["kill switch TB_AUTO_APPLY_KILL is on"]
    s_on = load(env, TB_AUTO_APPLY_ENABLED="1")
    bad = proposal(s_on, oos=0.0, cur_oos=0.5)
    o = pm.promote(st, s_on, bad, actor="auto", auto=True, force=True)      # force never applies to auto
    assert not o.ok and "not better" in o.reasons[0]
    assert st.promotions() == []
    refused = [r[0] for r in st.conn.execute("SELECT kind FROM notifications WHERE channel='discord'")]
    assert refused == ["params_refused"] * 2        # kill switch and guard rails; "not enabled" is silent
    o = pm.promote(st, s_on, good, actor="auto", auto=True)
    assert o.ok and st.promotions()[-1]["action"] == "auto"
    assert load(env).stop_atr_mult == 2.25
    st.close()


def test_manual_force_overrides_guard_rails_and_is_recorded(env):
    s = load(env)
    st = Store(s.db_path)
    o = pm.promote(st, s, proposal(s, oos=0.0, cur_oos=0.5), actor="bob", force=True)
    assert o.ok and st.promotions()[-1]["reason"].startswith("forced over: out of sample")
    st.close()


def test_cli_params_show_promote_rollback(env, monkeypatch, tmp_path, capsys):
    from tracer.cli import main
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load(env)
    pm.write_json(s.proposed_params_path, proposal(s, TB_FUTURES_STOP_ATR_MULT=2.5, agent="futures"))
    (tmp_path / "none.env").touch()        # an empty .env: nothing but the test's environment (a named one must exist)
    assert main(["--env-file", str(tmp_path / "none.env"), "params", "promote"]) == 0
    assert "promoted #1 for futures" in capsys.readouterr().out
    assert load(env).futures_stop_atr_mult == 2.5
    assert main(["--env-file", str(tmp_path / "none.env"), "params", "show", "--agent", "futures"]) == 0
    out = capsys.readouterr().out
    assert "TB_FUTURES_STOP_ATR_MULT" in out and "promoted" in out and "pending proposal" in out
    assert main(["--env-file", str(tmp_path / "none.env"), "params", "auto-apply"]) == 1
    assert "TB_AUTO_APPLY_ENABLED is off" in capsys.readouterr().out
    assert main(["--env-file", str(tmp_path / "none.env"), "params", "rollback", "--agent", "futures"]) == 0
    assert load(env).futures_stop_atr_mult == 2.0
    c = sqlite3.connect(env["TB_DB_PATH"])
    assert [r[0] for r in c.execute("SELECT action FROM param_promotions ORDER BY id")] == ["promote", "rollback"]


def test_a_secret_override_stays_out_of_the_proposal_the_report_and_the_promotion(postgres, tmp_path, monkeypatch,
                                                                                  capsys):
    """``--set TB_OPTIMIZE_STORAGE=postgresql://user:PASSWORD@...`` (the storage for one run): the proposal, the
    report and, once promoted, param_promotions show the override masked; both files are user-only."""
    from tracer.cli import main
    pw = "Sup3rS3cretPgPassw0rd"
    for k, v in {"TB_ACTIVE_PARAMS_PATH": str(tmp_path / "cfg" / "active.json"), "TB_SENTIMENT_SCORER": "lexicon",
                 "TB_STATE_DIR": str(tmp_path / "state"), "TB_DB_PATH": str(tmp_path / "t.db"),
                 "TB_LOG_DIR": str(tmp_path / "logs"), "TB_MARKET_FILTER": "none"}.items():
        monkeypatch.setenv(k, v)
    url = postgres.replace("postgresql://postgres@", f"postgresql://postgres:{pw}@")
    prop, out = tmp_path / "cfg" / "proposed.json", tmp_path / "out"
    (tmp_path / "none.env").touch()        # an empty .env (a named one must exist)
    env_file = ["--env-file", str(tmp_path / "none.env")]
    assert main(env_file + ["optimize", "--agent", "hybrid", "--symbols", "BTC/USD", "--from", "2022-01-10",
                            "--to", "2022-01-24", "--train-days", "9", "--test-days", "5", "--folds", "1",
                            "--trials", "2", "--out", str(out), "--proposal", str(prop), "--no-plot",
                            "--set", f"TB_OPTIMIZE_STORAGE={url}"]) == 0
    assert json.loads(prop.read_text())["optimiser"]["overrides"] == {"TB_OPTIMIZE_STORAGE": "***"}
    assert main(env_file + ["params", "promote", "--proposal", str(prop), "--force"]) == 0
    printed = capsys.readouterr()
    c = sqlite3.connect(tmp_path / "t.db")
    assert c.execute("SELECT COUNT(*) FROM param_promotions").fetchone()[0] == 1
    c.execute("PRAGMA wal_checkpoint(FULL)")
    c.close()
    texts = {"proposal": prop.read_text(), "report.json": (out / "report.json").read_text(),
             "stdout": printed.out, "stderr": printed.err,
             "audit DB (bytes)": (tmp_path / "t.db").read_bytes().decode("latin-1")}
    leaks = {k: v[max(0, v.index(pw) - 70):v.index(pw) + 30] for k, v in texts.items() if pw in v}
    assert not leaks, f"storage password leaked into {sorted(leaks)}: {leaks}"
    assert all(p.stat().st_mode & 0o077 == 0 for p in (prop, out / "report.json"))


def test_corrupt_active_file_stops_the_configuration(env, tmp_path):
    from tracer.config import ConfigError
    (tmp_path / "active.json").write_text("{not json")
    with pytest.raises(ConfigError, match="TB_ACTIVE_PARAMS_PATH"):
        load(env)


# --- the trend profile's search space (the default) -----------------------------------------------------------


@pytest.mark.parametrize("agent", pm.AGENTS)
def test_trend_space_contains_the_trend_defaults(tmp_path, agent):
    """Every default of the trend profile lies inside its search range (and on its grid), so the optimiser's
    baseline is the set in force and a proposal can move from it; the seed's space does not hold them."""
    s = load({"TB_ACTIVE_PARAMS_PATH": str(tmp_path / "none.json")})
    assert s.profile == "trend"
    sp = pm.space(agent, "trend")
    assert sp.keys() != pm.space(agent, "phase1c").keys() or agent == "futures"
    for k, v in pm.current_values(s, agent).items():
        p = sp[k]
        assert p.lo <= v <= p.hi, (k, v, p)
        assert abs((v - p.lo) / p.step - round((v - p.lo) / p.step)) < 1e-9, (k, v, p)
    assert any(not (p.lo <= pm.current_values(s, agent)[k] <= p.hi) for k, p in pm.space(agent, "phase1c").items()
               if k in pm.current_values(s, agent))
    if agent == "hybrid":   # the trend model's own parameters are tunable; its window fits the 600-bar look-back
        assert {"TB_TREND_WINDOW_H", "TB_MIN_DIRECTION_SCORE"} <= set(sp)
        assert sp["TB_TREND_WINDOW_H"].hi <= s.lookback_bars


def test_trend_promotion_passes_the_guard_rails_and_applies(tmp_path):
    env = {"TB_ACTIVE_PARAMS_PATH": str(tmp_path / "active.json"), "TB_DB_PATH": str(tmp_path / "t.db")}
    s = load(env)
    seed = proposal(load(env, TB_PROFILE="phase1c"))     # (before the promotion: it would overlay phase1c too)
    seed["profile"] = "phase1c"
    p = proposal(s, TB_TREND_WINDOW_H=432.0, TB_STOP_ATR_MULT=7.0)
    p["profile"] = "trend"
    assert pm.guard_rails(p, pm.current_values(s, "hybrid"), s, head=pm.code_version()) == []
    st = Store(s.db_path)
    o = pm.promote(st, s, p, actor="test")
    assert o.ok, o.message
    s2 = load(env)
    assert (s2.trend_window_h, s2.stop_atr_mult) == (432.0, 7.0)
    # a proposal from the seed's space (phase1c values) is refused under trend, with the reasons
    reasons = pm.guard_rails(seed, pm.current_values(s2, "hybrid"), s2)
    assert any("made under profile phase1c" in r for r in reasons)
    assert any("TB_MAX_HOLD_H: not a tunable parameter of the hybrid agent (profile trend)" in r for r in reasons)
    st.close()


def test_a_trend_variable_in_the_environment_shadows_a_promotion():
    assert pm.shadowed("hybrid", {"TB_TREND_WINDOW_H": "300"}, None) == ["TB_TREND_WINDOW_H"]
