"""Typed configuration: profiles, validation of every variable, secrets, typos, .env, .env.example."""
from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tracer.config import PROFILES, ConfigError, Settings, env_example, env_names, load_settings

REPO = Path(__file__).resolve().parents[2]
FIELDS = list(dataclasses.fields(Settings))
API_SENTINEL = "AKSENTINEL123"
SECRET_SENTINEL = "SECRETSENTINEL456"

# Garbage per kind: text that can never be a valid value of that kind. 'str' has none (any text is fine).
GARBAGE: dict[str, list[str]] = {
    "int": ["not-a-number", "1.5", "", "12abc"],
    "float": ["not-a-number", "nan", "inf", "-inf", "", "1,5"],
    "bool": ["maybe", "", "2", "truee"],
    "choice": ["bogus", ""],
    "path": ["", "   "],
    "symbols": ["BTC USD!!", ",,", "", "BTC/USD,ETH$/USD", "/USD", "BTC/EUR", "BTC/USD/X", "BTC\u00b2/USD"],
    "market": ["BTC USD!!", "BTC/USD,ETH/USD", "", "/USD", "BTC/EUR"],
    "datetime": ["yesterday", "2022-13-01T00:00:00Z", "10/01/2022"],
    "ids": ["alice", "1,two", "1.5", "12abc,3"],
    "channels": ["email", "console,sms", "tele gram"],
    "url": ["not a url", "ftp://example.com/x", "https://", "http://exa mple.com"],
}
KINDS = {f.metadata["kind"] for f in FIELDS}


def load(env: dict[str, str] | None = None, **kw) -> Settings:
    return load_settings(dict(env or {}), None, **kw)


def problem_for(err: ConfigError, env_name: str) -> str:
    hits = [p for p in err.problems if p.startswith(env_name + "=") or p.startswith(env_name + " ")]
    assert hits, f"{env_name} not named in {err.problems}"
    return hits[0]


def companions(env_name: str, value: str) -> dict[str, str]:
    """Other variables needed so a boundary value of ``env_name`` passes the cross-field rules."""
    if env_name == "TB_MIN_BARS":
        return {"TB_LOOKBACK_BARS": "5000"}
    if env_name == "TB_LOOKBACK_BARS":
        return {"TB_MIN_BARS": "30", "TB_TREND_WINDOW_H": "0"}
    if env_name in ("TB_TREND_WINDOW_H", "TB_MARKET_WINDOW_H"):
        return {"TB_LOOKBACK_BARS": "5000"}
    return {}


def fmt(x: float, kind: str) -> str:
    return str(int(x)) if kind == "int" else repr(float(x))


# --- profiles ----------------------------------------------------------------------------------


def test_defaults_are_trend_profile():
    s = load()
    assert s.profile == "trend"
    assert s.min_signal_quality == 1.0
    assert s.min_conviction_score == 2.0
    assert s.max_trades_per_day == 4
    assert s.confidence_sizing is True
    assert s.trend_window_h == 480.0 and s.lookback_bars >= s.trend_window_h
    assert (s.market_filter, s.market_window_h, s.futures_market_filter) == ("BTC/USD", 0.0, True)
    assert (s.trail_pct, s.max_hold_h, s.futures_vol_stop_mult) == (0.0, 0.0, 0.0)   # exits let a trend run
    # every field gets a concrete value (profile-driven ones included)
    for f in FIELDS:
        if f.name != "replay_end":
            assert getattr(s, f.name) is not None, f.name


def test_phase1c_profile_is_the_seed():
    s = load({"TB_PROFILE": "phase1c"})
    assert (s.min_signal_quality, s.min_conviction_score, s.max_trades_per_day) == (1.0, 2.0, 8)
    assert s.trend_window_h == 0.0 and s.lookback_bars == 256
    assert (s.stop_atr_mult, s.take_profit_atr_mult, s.trail_pct, s.max_hold_h) == (2.0, 4.0, 0.05, 48.0)
    assert (s.futures_max_leverage, s.futures_vol_stop_mult, s.kelly_min_trades) == (10.0, 3.0, 20)


def test_trend_window_must_fit_the_lookback():
    with pytest.raises(ConfigError) as ei:
        load({"TB_LOOKBACK_BARS": "200"})          # the trend profile's 480-hour mean needs 480 bars
    assert "TB_TREND_WINDOW_H=480.0" in str(ei.value) and "TB_LOOKBACK_BARS=200" in str(ei.value)
    assert load({"TB_LOOKBACK_BARS": "200", "TB_TREND_WINDOW_H": "200"}).trend_window_h == 200.0


def test_conservative_profile():
    s = load({"TB_PROFILE": "conservative"})
    assert (s.min_signal_quality, s.min_conviction_score) == (5.0, 6.0)
    assert s.max_trades_per_day == 4
    assert s.confidence_sizing is False


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_single_variable_overrides_profile(profile):
    s = load({"TB_PROFILE": profile, "TB_MIN_SIGNAL_QUALITY": "3.5"})
    assert s.min_signal_quality == 3.5
    # the rest of the profile still applies
    assert s.min_conviction_score == PROFILES[profile]["min_conviction_score"]
    assert s.max_trades_per_day == PROFILES[profile]["max_trades_per_day"]
    s = load({"TB_PROFILE": profile, "TB_CONFIDENCE_SIZING": "off", "TB_MAX_TRADES_PER_DAY": "0"})
    assert s.confidence_sizing is False and s.max_trades_per_day == 0


def test_every_profile_sets_only_profile_variables():
    profile_fields = {f.name for f in FIELDS if f.metadata["profile"]}
    for name, values in PROFILES.items():
        assert set(values) == profile_fields, name


# --- validation of every declared variable --------------------------------------------------------


def test_every_kind_is_covered():
    assert KINDS <= set(GARBAGE) | {"str"}, KINDS - set(GARBAGE)


def _garbage_cases():
    for f in FIELDS:
        kind = f.metadata["kind"]
        for g in GARBAGE.get(kind, []):
            yield pytest.param(f, g, id=f"{f.metadata['env']}={g!r}")
        lo, hi = f.metadata["lo"], f.metadata["hi"]
        if kind in ("int", "float"):
            if lo is not None:
                yield pytest.param(f, fmt(lo - 1, kind), id=f"{f.metadata['env']}<lo")
                if kind == "float":
                    yield pytest.param(f, repr(lo - max(abs(lo), 1.0) * 1e-6), id=f"{f.metadata['env']}<~lo")
            if hi is not None:
                yield pytest.param(f, fmt(hi + 1, kind), id=f"{f.metadata['env']}>hi")
                if kind == "float":
                    yield pytest.param(f, repr(hi + max(abs(hi), 1.0) * 1e-6), id=f"{f.metadata['env']}>~hi")


@pytest.mark.parametrize("f,raw", list(_garbage_cases()))
def test_garbage_value_is_refused_with_name_value_and_allowed(f, raw):
    name = f.metadata["env"]
    with pytest.raises(ConfigError) as ei:
        load({name: raw})
    err = ei.value
    assert len(err.problems) == 1, err.problems
    p = problem_for(err, name)
    text = str(err)
    assert name in text
    if f.metadata["secret"]:
        assert raw not in text
    else:
        assert repr(raw) in p
    assert "allowed" in p


@pytest.mark.parametrize("f", [f for f in FIELDS if f.metadata["kind"] == "str"],
                         ids=lambda f: f.metadata["env"])
def test_str_variables_accept_any_text(f):
    name = f.metadata["env"]
    env = {name: "any text: ünïcödé / 42 !!"}
    if f.metadata["secret"] or f.metadata["required_if"]:  # secrets and paired settings come as pairs
        env = {"TB_ALPACA_API_KEY": "some key", "TB_ALPACA_SECRET_KEY": "some secret",
               "TB_TELEGRAM_BOT_TOKEN": "1:some token", "TB_TELEGRAM_CHAT_ID": "42",
               "TB_BINANCE_API_KEY": "k", "TB_BINANCE_API_SECRET": "s", "TB_BYBIT_API_KEY": "k",
               "TB_BYBIT_API_SECRET": "s", name: "any text: !! 42"}
    s = load(env)
    assert getattr(s, f.name) == env[name].strip()


@pytest.mark.parametrize("f", [f for f in FIELDS if f.metadata["kind"] in ("int", "float")
                               and (f.metadata["lo"] is not None or f.metadata["hi"] is not None)],
                         ids=lambda f: f.metadata["env"])
def test_range_bounds_are_inclusive(f):
    name, kind = f.metadata["env"], f.metadata["kind"]
    for bound in (f.metadata["lo"], f.metadata["hi"]):
        if bound is None:
            continue
        raw = fmt(bound, kind)
        s = load({name: raw, **companions(name, raw)})
        assert getattr(s, f.name) == pytest.approx(bound)
        assert isinstance(getattr(s, f.name), int if kind == "int" else float)


def test_all_bad_variables_are_reported_together():
    env = {}
    for f in FIELDS:
        g = GARBAGE.get(f.metadata["kind"])
        if g:
            env[f.metadata["env"]] = g[0]
    with pytest.raises(ConfigError) as ei:
        load(env)
    for name in env:
        problem_for(ei.value, name)
    assert len(ei.value.problems) == len(env)


def test_choice_values_and_parsing():
    s = load({"TB_LOG_LEVEL": "DEBUG", "TB_WRITE_ARTIFACTS": " Yes ", "TB_NOTIFY_CONSOLE": "0",
              "TB_SYMBOLS": "btcusdt, ETH-USD,BTC/USD ,sol", "TB_DB_PATH": "x/y.db",
              "TB_REPLAY_START": "2022-03-01T02:00:00+02:00", "TB_REPLAY_END": "2022-04-01"})
    assert s.log_level == "DEBUG"
    assert s.write_artifacts is True and s.notify_console is False
    assert s.symbols == ("BTC/USD", "ETH/USD", "SOL/USD")
    assert s.db_path == Path("x/y.db")
    assert s.replay_start == datetime(2022, 3, 1, 0, 0, tzinfo=timezone.utc)
    assert s.replay_end == datetime(2022, 4, 1, tzinfo=timezone.utc)
    assert load({"TB_REPLAY_START": ""}).replay_start is None
    assert load({"TB_FEE_BPS": " 7.5 "}).fee_bps == 7.5


def test_settings_are_immutable():
    s = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_positions = 99  # type: ignore[misc]


# --- secrets -------------------------------------------------------------------------------------


SECRETS = {"TB_ALPACA_API_KEY": API_SENTINEL, "TB_ALPACA_SECRET_KEY": SECRET_SENTINEL}


def test_secrets_never_shown():
    s = load(SECRETS)
    assert s.alpaca_api_key == API_SENTINEL and s.alpaca_secret_key == SECRET_SENTINEL
    shown = [repr(s), str(s), repr(s.describe()), "\n".join(" ".join(row) for row in s.describe()),
             f"{s}", f"{s!r}"]
    for text in shown:
        assert API_SENTINEL not in text and SECRET_SENTINEL not in text
        # no fragment either
        assert "SENTINEL" not in text
    assert set(s.secret_values()) == {API_SENTINEL, SECRET_SENTINEL}
    rows = {name: shown for name, shown, _ in s.describe()}
    assert rows["TB_ALPACA_API_KEY"] == "***" and rows["TB_ALPACA_SECRET_KEY"] == "***"
    assert {r[0] for r in s.describe()} == env_names()


def test_secrets_not_in_config_error():
    with pytest.raises(ConfigError) as ei:
        load({**SECRETS, "TB_MAX_POSITIONS": "lots", "TB_FEE_BPS": "-1"})
    text = str(ei.value) + repr(ei.value.problems) + repr(ei.value.args)
    assert "TB_MAX_POSITIONS" in text and "TB_FEE_BPS" in text
    assert "SENTINEL" not in text


def test_api_key_without_secret_names_the_secret():
    for env in ({"TB_ALPACA_API_KEY": API_SENTINEL},
                {"TB_ALPACA_API_KEY": API_SENTINEL, "TB_ALPACA_SECRET_KEY": "  "}):
        with pytest.raises(ConfigError) as ei:
            load(env)
        p = problem_for(ei.value, "TB_ALPACA_SECRET_KEY")
        assert "required" in p
        assert "SENTINEL" not in str(ei.value)
    # the secret alone is fine, and neither set is fine
    assert load({"TB_ALPACA_SECRET_KEY": SECRET_SENTINEL}).alpaca_api_key == ""
    assert load().secret_values() == []


# --- unknown variables -----------------------------------------------------------------------------


def test_unknown_tb_variable_warns_by_name():
    warnings: list[str] = []
    s = load({"TB_MAX_POSITONS": "3", "TB_MAX_POSITIONS": "4", "PATH": "/bin", "HOME": "/root",
              "XTB_THING": "1", "tb_lower": "1"}, warn=warnings.append)
    assert s.max_positions == 4
    assert len(warnings) == 1
    assert "TB_MAX_POSITONS" in warnings[0]
    for other in ("PATH", "HOME", "XTB_THING", "tb_lower", "TB_MAX_POSITIONS="):
        assert other not in warnings[0]


def test_known_variables_do_not_warn():
    warnings: list[str] = []
    load({"TB_MAX_POSITIONS": "4", "TB_PROFILE": "conservative"}, warn=warnings.append)
    assert warnings == []
    load({"TB_TYPO": "1"})  # no callback: no error


# --- .env -------------------------------------------------------------------------------------------


def test_dotenv_is_read_and_environment_wins(tmp_path):
    p = tmp_path / ".env"
    p.write_text("# comment\nTB_MAX_POSITIONS=3\nTB_FEE_BPS=7\nexport TB_PROFILE=conservative\n"
                 "TB_UNKNOWN_IN_FILE=1\nTB_SYMBOLS=\"BTC/USD,ETH/USD\"\n")
    warnings: list[str] = []
    s = load_settings({"TB_FEE_BPS": "12"}, p, warn=warnings.append)
    assert s.max_positions == 3
    assert s.fee_bps == 12.0
    assert s.profile == "conservative" and s.min_signal_quality == 5.0
    assert s.symbols == ("BTC/USD", "ETH/USD")
    assert any("TB_UNKNOWN_IN_FILE" in w for w in warnings)
    # a bad value in the file is refused like one in the environment ...
    p.write_text("TB_MAX_POSITIONS=many\n")
    with pytest.raises(ConfigError, match="TB_MAX_POSITIONS"):
        load_settings({}, p)
    # ... unless the environment overrides it
    assert load_settings({"TB_MAX_POSITIONS": "2"}, p).max_positions == 2


def test_a_missing_default_dotenv_is_fine_a_named_one_is_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings({}) == load()
    with pytest.raises(ConfigError, match="nope.env: no such file"):
        load_settings({}, tmp_path / "nope.env")


def test_an_active_params_path_that_is_not_a_file_is_refused(tmp_path, monkeypatch):
    """A folder (or a dangling link) would drop every promoted parameter without a word; a missing file is nothing
    promoted yet (``tracer params promote`` creates it)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ap").mkdir()
    (tmp_path / "link.json").symlink_to(tmp_path / "gone.json")
    for bad in ("ap", "link.json"):
        with pytest.raises(ConfigError, match="TB_ACTIVE_PARAMS_PATH"):
            load({"TB_ACTIVE_PARAMS_PATH": str(tmp_path / bad)})
    assert load({"TB_ACTIVE_PARAMS_PATH": "none_yet.json"}).max_positions == load().max_positions


# --- .env.example ------------------------------------------------------------------------------------


def test_env_example_file_is_generated_from_declarations():
    text = (REPO / ".env.example").read_text()
    gen = env_example()
    assert text in (gen, gen + "\n"), (
        "regenerate: python -c \"from tracer.config import env_example; print(env_example())\" > .env.example")
    for name in env_names():
        assert re.search(rf"^(# )?{name}=", text, re.M), name


def test_env_example_as_dotenv_gives_defaults(tmp_path):
    p = tmp_path / ".env"
    p.write_text(env_example())
    warnings: list[str] = []
    assert load_settings({}, p, warn=warnings.append) == load()
    assert warnings == []


def test_env_names_are_unique_and_prefixed():
    names = [f.metadata["env"] for f in FIELDS]
    assert len(names) == len(set(names))
    assert all(n.startswith("TB_") for n in names)
    assert all(f.metadata["help"] for f in FIELDS)


# --- cross-field rules ---------------------------------------------------------------------------------


def test_market_filter_settings():
    assert load({"TB_MARKET_FILTER": "none"}).market_filter == "none"
    assert load({"TB_MARKET_FILTER": "ethusdt"}).market_filter == "ETH/USD"
    with pytest.raises(ConfigError) as ei:       # explicit, but no agent trades it: its bars are never read
        load({"TB_MARKET_FILTER": "BTC/USD", "TB_SYMBOLS": "ETH/USD", "TB_FUTURES_SYMBOLS": "SOL/USD"})
    assert "TB_SYMBOLS" in problem_for(ei.value, "TB_MARKET_FILTER")
    # from the profile, an agent without BTC trades without the filter (EvalParams.from_settings): no error
    assert load({"TB_SYMBOLS": "ETH/USD", "TB_FUTURES_SYMBOLS": "SOL/USD"}).market_filter == "BTC/USD"
    with pytest.raises(ConfigError) as ei:
        load({"TB_MARKET_WINDOW_H": "700"})      # more than the trend profile's 600-bar look-back
    assert "TB_LOOKBACK_BARS=600" in problem_for(ei.value, "TB_MARKET_WINDOW_H")
    with pytest.raises(ConfigError) as ei:
        load({"TB_PROFILE": "phase1c", "TB_MARKET_FILTER": "BTC/USD"})   # no trend window to follow
    assert "window" in problem_for(ei.value, "TB_MARKET_WINDOW_H")
    assert load({"TB_PROFILE": "phase1c", "TB_MARKET_FILTER": "BTC/USD", "TB_MARKET_WINDOW_H": "240"}).market_window_h == 240
    assert load({"TB_TREND_WINDOW_H": "0"}).market_filter == "none"      # the profile's filter follows the trend


def test_min_bars_above_lookback_refused():
    with pytest.raises(ConfigError) as ei:
        load({"TB_MIN_BARS": "300", "TB_LOOKBACK_BARS": "256"})
    assert "TB_MIN_BARS" in problem_for(ei.value, "TB_MIN_BARS")
    with pytest.raises(ConfigError) as ei:
        load({"TB_LOOKBACK_BARS": "100"})  # below the default TB_MIN_BARS=180
    assert "TB_LOOKBACK_BARS" in str(ei.value) and "TB_MIN_BARS" in str(ei.value)
    s = load({"TB_MIN_BARS": "300", "TB_LOOKBACK_BARS": "300", "TB_TREND_WINDOW_H": "240"})
    assert s.min_bars == s.lookback_bars == 300


@pytest.mark.parametrize("start,end", [
    (None, "2022-01-10T00:00:00Z"),          # equal to the default start
    (None, "2021-12-31T00:00:00Z"),          # before the default start
    ("2023-01-01T00:00:00Z", "2022-06-01T00:00:00Z"),
    ("2023-01-01T00:00:00Z", "2023-01-01T00:00:00+00:00"),
])
def test_replay_end_not_after_start_refused(start, end):
    env = {"TB_REPLAY_END": end}
    if start:
        env["TB_REPLAY_START"] = start
    with pytest.raises(ConfigError) as ei:
        load(env)
    assert "TB_REPLAY_END" in problem_for(ei.value, "TB_REPLAY_END")


def test_replay_window_accepted():
    s = load({"TB_REPLAY_START": "2022-02-01T00:00:00Z", "TB_REPLAY_END": "2022-02-01T01:00:00Z"})
    assert s.replay_end > s.replay_start
    assert load({"TB_REPLAY_START": "", "TB_REPLAY_END": "2000-01-01"}).replay_end.year == 2000
