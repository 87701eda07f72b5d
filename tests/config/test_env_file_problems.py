""".env files that python-dotenv cannot read as written: a line it cannot parse (it used to skip it with a warning,
the profile's value standing in for the user's) and a file that is not UTF-8 (a UnicodeDecodeError traceback). Both
are a configuration error naming the variable or the file, exit 2 from ``tracer check-config`` and the agents."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tracer.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "scripts" / "hybrid_crypto_trader.py"
# the closing quote missing: phase1c's own futures leverage would stand in for the user's 2
UNCLOSED = 'TB_PROFILE=phase1c\nTB_FUTURES_MAX_LEVERAGE="2\nTB_SLIPPAGE_BPS=5\n'
SECRET = "SKSENTINEL0002"
LATIN1 = "TB_PROFILE=trend\n# Clés Binance (compte principal)\n".encode("latin-1")


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TB_", "PPLX_"))}
    env.update(TB_STATE_DIR=str(tmp / "state"), TB_LOG_DIR=str(tmp / "logs"), TB_DB_PATH=str(tmp / "state" / "t.db"))
    return env


def _run(tmp: Path, *cmd: str | Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *(str(c) for c in cmd)], cwd=tmp, env=_env(tmp), capture_output=True, text=True,
                          timeout=120)


def _no_read_prefix() -> tuple[str, ...]:
    """A real EACCES on a mode-000 file: as root only without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv: a mode-000 file stays readable")
    return ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


def _problems(env_file: Path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_settings({}, env_file)
    return e.value.problems


def test_an_unparsable_line_names_its_variable_and_line(tmp_path):
    f = tmp_path / ".env"
    f.write_text(UNCLOSED)
    assert _problems(f) == [f"TB_FUTURES_MAX_LEVERAGE ({f} line 2): cannot be parsed (an unclosed quote?); fix or "
                            "remove the line"]


def test_the_line_is_counted_past_blank_lines_a_bom_and_export_and_no_value_is_shown(tmp_path):
    f = tmp_path / ".env"
    # python-dotenv's binding of the bad line starts at the blank lines before it
    f.write_text(f"\ufeffTB_PROFILE=trend\n\n\n  export TB_ALPACA_SECRET_KEY='{SECRET}\n")
    (problem,) = _problems(f)
    assert problem.startswith(f"TB_ALPACA_SECRET_KEY ({f} line 4)") and SECRET not in problem
    f.write_text("TB_PROFILE=trend\nnot an assignment\n")
    assert _problems(f) == [f"{f} line 2: cannot be parsed (an unclosed quote?); fix or remove the line"]
    f.write_text("\ufeffTB_FUTURES_MAX_LEVERAGE=\"2\nTB_PROFILE=trend\n")
    assert _problems(f)[0].startswith(f"TB_FUTURES_MAX_LEVERAGE ({f} line 1)")


def test_a_well_formed_env_still_loads(tmp_path):
    f = tmp_path / ".env"
    f.write_text("\ufeff# a comment\nTB_PROFILE=phase1c\nexport TB_FUTURES_MAX_LEVERAGE='2'  # mine\r\n"
                 "TB_SLIPPAGE_BPS=\"5\"\n")
    s = load_settings({}, f)
    assert s.futures_max_leverage == 2 and s.slippage_bps == 5


def test_a_latin1_env_names_the_file(tmp_path):
    f = tmp_path / ".env"
    f.write_bytes(LATIN1)
    assert _problems(f) == [f"{f}: not UTF-8 (byte 0xe9 on line 2); save it as UTF-8"]


def test_check_config_exits_2_on_an_unparsable_line(tmp_path):
    (tmp_path / ".env").write_text(UNCLOSED)
    r = _run(tmp_path, sys.executable, "-m", "tracer.cli", "check-config")
    assert r.returncode == 2 and "configuration OK" not in r.stdout, r.stdout[-300:]
    assert "TB_FUTURES_MAX_LEVERAGE (.env line 2): cannot be parsed" in r.stderr, r.stderr


def test_check_config_and_an_agent_exit_2_on_a_latin1_env_without_a_traceback(tmp_path):
    (tmp_path / ".env").write_bytes(LATIN1)
    r = _run(tmp_path, sys.executable, "-m", "tracer.cli", "check-config")
    assert r.returncode == 2 and "Traceback" not in r.stderr and ".env: not UTF-8" in r.stderr, r.stderr[-500:]
    r = _run(tmp_path, sys.executable, AGENT, "--once")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-500:]
    assert "hybrid: refusing to start" in r.stderr and ".env: not UTF-8" in r.stderr
    assert not (tmp_path / "state" / "t.db").exists()


def test_monitoring_keeps_the_alert_channels_of_a_env_with_an_unparsable_line(tmp_path):
    """The health check and the watchdogs salvage what validates: the bad line's variable is not in what they
    read (python-dotenv drops it), so the rest of the file, alert channels included, is kept."""
    from tracer.ops.fallback import load_for_monitoring
    envf = tmp_path / ".env"
    envf.write_text(UNCLOSED + "TB_DISCORD_WEBHOOK_URL=https://discord.com/api/webhooks/1/abc\n")
    got = load_for_monitoring({}, envf)
    assert not got.valid and "TB_FUTURES_MAX_LEVERAGE" in got.problems[0]
    assert got.settings.discord_webhook_url == "https://discord.com/api/webhooks/1/abc"
    assert got.settings.profile == "phase1c"


def test_monitoring_keeps_the_alert_channels_and_db_of_a_env_that_is_not_utf8(tmp_path):
    """The agents refuse a Latin-1 .env; the health check and the watchdogs that must say so still read where the
    DB is and whom to alert from the rest of it."""
    from tracer.ops.fallback import load_for_monitoring
    hook, db = "https://discord.com/api/webhooks/1/abc", tmp_path / "live" / "tracer.db"
    envf = tmp_path / ".env"
    envf.write_bytes(LATIN1 + f"TB_DB_PATH={db}\nTB_STATE_DIR={tmp_path / 'live'}\nTB_DISCORD_WEBHOOK_URL={hook}\n"
                     .encode())
    got = load_for_monitoring({}, envf)
    assert not got.valid and "not UTF-8" in got.problems[0]
    assert (got.settings.discord_webhook_url, got.settings.db_path) == (hook, db)


# --- a .env that cannot be read, or is not a file -----------------------------------------------------


def test_an_unreadable_env_names_the_file_and_the_fix(tmp_path, monkeypatch):
    """macOS privacy protection (a checkout in ~/Documents) answers EPERM, a root-owned .env left by a `sudo`
    answers EACCES: a configuration problem naming the file, not a PermissionError."""
    f = tmp_path / ".env"
    f.write_text("TB_MAX_POSITION_PCT=0.02\n")
    real = Path.read_text

    def deny(self, *a, **k):
        if self == f:
            raise PermissionError(1, "Operation not permitted", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", deny)
    (problem,) = _problems(f)
    assert problem.startswith(f"{f}: cannot be read (Operation not permitted)")
    assert f"chmod 600 {f}" in problem and "Full Disk Access" in problem


def test_check_config_and_an_agent_exit_2_on_an_unreadable_env(tmp_path):
    prefix = _no_read_prefix()
    (tmp_path / ".env").write_text("TB_MAX_POSITION_PCT=0.02\n")
    (tmp_path / ".env").chmod(0)
    for cmd in ((sys.executable, "-m", "tracer.cli", "check-config"), (sys.executable, AGENT, "--once")):
        r = _run(tmp_path, *cmd, prefix=prefix)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (r.returncode, r.stderr[-400:])
        assert ".env: cannot be read (Permission denied)" in r.stderr, r.stderr[-400:]


@pytest.mark.parametrize("kind", ["directory", "dangling link"])
def test_a_env_that_is_not_a_file_is_refused_not_skipped(tmp_path, kind):
    """`docker run -v $PWD/.env:/app/.env` with no .env on the host makes .env a directory; a .env linked to a
    secrets volume that is not mounted is a dangling link. Skipped, the agents ran on the profile's defaults."""
    envf = tmp_path / ".env"
    if kind == "directory":
        envf.mkdir()
    else:
        envf.symlink_to(tmp_path / "secrets" / "tracer.env")
    with pytest.raises(ConfigError, match=r"\.env: (not a file|a link to)"):
        load_settings({}, envf)
    r = _run(tmp_path, sys.executable, "-m", "tracer.cli", "check-config")
    assert r.returncode == 2 and ".env: " in r.stderr and "configuration OK" not in r.stdout, r.stderr[-300:]


def test_an_env_file_named_that_does_not_exist_is_refused(tmp_path):
    """`--env-file prod.evn` (a typo): the user named a file; only the default .env may be absent."""
    for cmd in ((sys.executable, "-m", "tracer.cli", "--env-file", "prod.evn", "check-config"),
                (sys.executable, AGENT, "--once", "--env-file", "prod.evn")):
        r = _run(tmp_path, *cmd)
        assert r.returncode == 2 and "prod.evn: no such file" in r.stderr, (r.returncode, r.stderr[-300:])
    r = _run(tmp_path, sys.executable, "-m", "tracer.cli", "check-config")     # no .env at all: the environment
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr[-300:]
