"""Reliability (issue 10): configuration fuzzing. Every ``TB_*`` variable given garbage of its kind is refused
at start with a message naming it.

* ``load_settings``: every field of :class:`tracer.config.Settings` (iterated with ``dataclasses.fields``) gets
  hypothesis-generated garbage of its kind: text that is no integer / number / boolean / choice / ISO time /
  symbol list / http(s) URL, out-of-range numbers (just below ``lo``, just above ``hi``, far out), ``NaN`` /
  ``inf`` / ``1e999``, non-ASCII digits (``١٢``) and ``1_000``, dates past year 9999 in UTC, symbols that only
  match case-insensitively (``BTſ/USD``), empty or whitespace paths, and for every text variable control
  characters (NUL, newline, ESC) and values longer than 4096 characters. Each must raise ``ConfigError``
  (never another exception) with a problem line that starts with the variable's name.
* Empty strings for the required pairs (a key without its secret, a Telegram token without its chat id).
* ``TB_FEED=live`` with unknown bar/news sources or malformed source weights.
* The real agent process entry point (``scripts/hybrid_crypto_trader.py --once``, and the futures agent once):
  exit code 2 and the variable named on stderr, for a sample of variables, one or more per kind.

Hypothesis runs derandomized: the same examples every run.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
FIELDS = list(dataclasses.fields(Settings))
N_DEFAULT = 6
N_LONG = 40

_TRUE_FALSE = {"1", "true", "yes", "on", "y", "0", "false", "no", "off", "n"}
_INT_OK = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT_OK = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_SYMBOL_OK = re.compile(r"[A-Za-z0-9]+(?:[/-](?:USD|USDT|USDC|BUSD|usd|usdt|usdc|busd))?", re.ASCII)
_CONTROL = st.sampled_from(["\x00", "\n", "\r", "\x1b[31m", "\x07", "\x7f", "\u0085", "\t\x00"])
_NO_NUL_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def _texty(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Garbage that every text-like variable (str, path, url) must refuse: control characters, huge values."""
    return st.one_of(
        st.builds(lambda a, c, b: "v" + a + c + b + "v", _NO_NUL_TEXT, _CONTROL, _NO_NUL_TEXT),
        st.integers(4097, 20000).map(lambda n: "a" * n),
        base,
    )


def _out_of_range(meta, kind: str) -> list[st.SearchStrategy[str]]:
    lo, hi = meta["lo"], meta["hi"]
    out: list[st.SearchStrategy[str]] = []
    if kind == "int":
        if lo is not None:
            out.append(st.integers(max_value=int(lo) - 1, min_value=int(lo) - 10 ** 12).map(str))
        if hi is not None:
            out.append(st.integers(min_value=int(hi) + 1, max_value=int(hi) + 10 ** 12).map(str))
    else:
        if lo is not None:
            out.append(st.floats(max_value=lo, exclude_max=True, min_value=-1e300).map(repr))
        if hi is not None:
            out.append(st.floats(min_value=hi, exclude_min=True, max_value=1e300).map(repr))
    return out


def _valid_url(s: str) -> bool:
    from urllib.parse import urlsplit
    s = s.strip()
    try:
        p = urlsplit(s)
        port_ok = p.port is None or 0 < p.port < 65536
    except ValueError:
        return False
    return (p.scheme.lower() in ("http", "https") and bool(p.hostname) and port_ok and p.hostname.isascii()
            and not any(c.isspace() for c in s))


def garbage(f: dataclasses.Field) -> st.SearchStrategy[str]:
    """Values the variable must refuse."""
    meta = f.metadata
    kind = meta["kind"]
    text = st.text(max_size=30)
    if kind == "int":
        return st.one_of(text.filter(lambda s: not _INT_OK.fullmatch(s.strip())),
                         st.sampled_from(["1.5", "1e3", "1_000", "\u0661\u0662", "0x10", "", " ", "12abc", "--1"]),
                         *_out_of_range(meta, kind))
    if kind == "float":
        return st.one_of(text.filter(lambda s: not _FLOAT_OK.fullmatch(s.strip())),
                         st.sampled_from(["nan", "NaN", "inf", "-Infinity", "1e999", "-1e999", "1_0.5",
                                          "\u0661.\u0665", "1,5", "", "0x1p3", "1e", "."]),
                         *_out_of_range(meta, kind))
    if kind == "bool":
        return st.one_of(text.filter(lambda s: s.strip().lower() not in _TRUE_FALSE),
                         st.sampled_from(["", "2", "truee", "Y3S", "\u0131", "on\x00"]))
    if kind == "choice":
        return st.one_of(text.filter(lambda s: s.strip() not in meta["choices"]),
                         st.sampled_from(["", "bogus"] + [c.swapcase() + "x" for c in meta["choices"]]))
    if kind == "datetime":
        return st.one_of(
            st.text(st.characters(blacklist_categories=("Cs", "Nd")), min_size=1, max_size=30)
            .filter(lambda s: s.strip() != ""),
            st.sampled_from(["2022-13-01T00:00:00Z", "2022-02-30T00:00:00Z", "2022-01-01T25:00:00Z",
                             "10/01/2022", "0000-01-01", "9999-12-31T23:59:59-01:00",
                             "0001-01-01T00:00:00+01:00", "2022-01-01T00:00:00+25:00", "yesterday"]),
            st.integers(1, 59).map(lambda m: f"9999-12-31T23:{m:02d}:00-{m % 23 + 1:02d}:00"))
    if kind == "symbols":
        def bad(s: str) -> bool:
            items = [x.strip() for x in s.split(",") if x.strip()]
            return not items or any(not _SYMBOL_OK.fullmatch(x) for x in items)
        return st.one_of(text.filter(bad),
                         st.sampled_from(["", ",,", "BT\u017f/USD", "\u212a/USD", "BTC/EUR", "BTC USD",
                                          "BTC/USD/X", "BTC\u00b2/USD", "/USD", "BTC/USD,\x00"]))
    if kind == "market":        # one symbol or "none"; a list or anything else is refused
        def bad_market(s: str) -> bool:
            return s.strip().lower() != "none" and not _SYMBOL_OK.fullmatch(s.strip())
        return st.one_of(text.filter(bad_market),
                         st.sampled_from(["", "BTC/USD,ETH/USD", "nonee", "BTC/EUR", "\u212a/USD", "BTC USD"]))
    if kind == "ids":
        def bad_ids(s: str) -> bool:
            return any(not _INT_OK.fullmatch(x.strip()) for x in s.split(",") if x.strip())
        return st.one_of(text.filter(bad_ids),
                         st.sampled_from(["alice", "1,two", "1.5", "\u0661\u0662", "1_000", "12abc,3", "0x10"]))
    if kind == "channels":
        def bad_channels(s: str) -> bool:
            return any(x.strip().lower() not in ("console", "discord", "telegram") for x in s.split(",") if x.strip())
        return st.one_of(text.filter(bad_channels), st.sampled_from(["email", "console,sms", "tele gram", "slack"]))
    if kind == "path":
        return _texty(st.sampled_from(["", "   ", "\t"]))
    if kind == "url":
        base = st.one_of(text.filter(lambda s: not _valid_url(s)),
                         st.sampled_from(["not a url", "ftp://example.com/x", "https://", "http://exa mple.com",
                                          "javascript:alert(1)", "file:///etc/passwd", "http://host:99999/",
                                          "http://[::1", "//example.com", "https://b\u00fccher.example"]))
        if f.default:          # a required URL: empty is garbage too; the optional one (Discord) may be empty
            base = st.one_of(base, st.sampled_from(["", "   "]))
        else:
            base = base.filter(lambda s: s.strip() != "")
        return _texty(base)
    if kind == "str":
        return st.one_of(st.builds(lambda a, c, b: "v" + a + c + b + "v", _NO_NUL_TEXT, _CONTROL, _NO_NUL_TEXT),
                         st.integers(4097, 20000).map(lambda n: "k" * n))
    raise AssertionError(kind)


def named(err: ConfigError, env: str) -> bool:
    return any(p.startswith(env + "=") or p.startswith(env + " ") for p in err.problems)


def _load(env: dict[str, str]):
    return load_settings(env, None)


def _fuzz_all_fields(n_examples: int, reliability) -> None:
    counts = {"variables": 0, "values": 0, "refused_naming_it": 0, "accepted": 0, "other_exception": 0}
    failures: list[str] = []
    kinds: set[str] = set()
    for f in FIELDS:
        env = f.metadata["env"]
        kinds.add(f.metadata["kind"])
        counts["variables"] += 1

        @settings(max_examples=n_examples, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(raw=garbage(f))
        def one(raw: str) -> None:
            counts["values"] += 1
            try:
                _load({env: raw})
            except ConfigError as e:
                if named(e, env):
                    counts["refused_naming_it"] += 1
                else:
                    failures.append(f"{env}={raw!r:.80}: refused without naming it: {e.problems}")
                return
            except Exception as e:  # noqa: BLE001 - the point of the test
                counts["other_exception"] += 1
                failures.append(f"{env}={raw!r:.80}: {type(e).__name__}: {e}"[:300])
                return
            counts["accepted"] += 1
            failures.append(f"{env}={raw!r:.80}: garbage accepted")

        one()
    ok = not failures
    reliability(f"fuzz: config garbage per TB_ variable (load_settings){' long' if n_examples > N_DEFAULT else ''}",
                trials=counts["values"], ok=ok, inputs_fuzzed=counts["values"], kinds=",".join(sorted(kinds)),
                checked="every TB_ variable refused with a ConfigError naming it; no other exception",
                **counts)
    assert ok, "\n".join(failures[:20])


def test_every_variable_refuses_garbage_of_its_kind(reliability):
    _fuzz_all_fields(N_DEFAULT, reliability)


@pytest.mark.long
def test_every_variable_refuses_garbage_of_its_kind_long(reliability):
    _fuzz_all_fields(N_LONG, reliability)


PAIR_COMPANIONS = {
    "TB_ALPACA_SECRET_KEY": "TB_ALPACA_API_KEY", "TB_BINANCE_API_SECRET": "TB_BINANCE_API_KEY",
    "TB_BYBIT_API_SECRET": "TB_BYBIT_API_KEY", "TB_TELEGRAM_BOT_TOKEN": "TB_TELEGRAM_CHAT_ID",
    "TB_TELEGRAM_CHAT_ID": "TB_TELEGRAM_BOT_TOKEN",
}


def test_required_pairs_refuse_an_empty_half(reliability):
    paired = [f.metadata["env"] for f in FIELDS if f.metadata["required_if"]]
    assert set(paired) == set(PAIR_COMPANIONS), paired
    n = refused = 0
    for env, other in PAIR_COMPANIONS.items():
        for empty in ("", "   ", None):
            n += 1
            e_ = {other: "set-value-1234"}
            if empty is not None:
                e_[env] = empty
            with pytest.raises(ConfigError) as ei:
                _load(e_)
            assert named(ei.value, env), ei.value.problems
            assert "set-value-1234" not in str(ei.value)
            refused += 1
    reliability("fuzz: config required pairs with an empty half", trials=n, ok=refused == n, inputs_fuzzed=n,
                checked="a key without its secret (or token without chat id) refused naming the missing one",
                pairs=len(PAIR_COMPANIONS), refused=refused)


_SOURCE_WORDS = st.sampled_from(["alpaca", "binance_spot", "binance_usdm", "yahoo", "coingecko", "perplexity",
                                  "ALPACA", " yahoo ", "bogus", "reuters", "", "alpaca=1", "binance"])
_SOURCE_SPECS = st.one_of(st.text(max_size=30), st.lists(_SOURCE_WORDS, max_size=4).map(",".join))
_WEIGHTS = st.one_of(st.text(max_size=30), st.lists(st.tuples(_SOURCE_WORDS, st.sampled_from(
    ["1", "0.5", "10", "11", "-1", "nan", "x", ""])).map(lambda t: f"{t[0]}={t[1]}"), max_size=3).map(",".join))


@settings(max_examples=40, derandomize=True, deadline=None, database=None)
@given(bars=_SOURCE_SPECS, news=_SOURCE_SPECS, weights=_WEIGHTS)
def _live_sources_case(bars, news, weights, stats):
    from tracer.data.factory import BAR_SOURCES, NEWS_SOURCES
    env = {"TB_FEED": "live", "TB_BAR_SOURCES": bars, "TB_NEWS_SOURCES": news, "TB_NEWS_SOURCE_WEIGHTS": weights}
    stats["run"] += 1

    def names_ok(spec, allowed, need_one):
        if any(c for c in spec if not c.isprintable()) or len(spec.strip()) > 4096:
            return None           # the text rules already refuse it (control characters)
        names = [x.strip().lower() for x in spec.split(",") if x.strip()]
        return all(n in allowed for n in names) and (names or not need_one)

    try:
        s = _load(env)
    except ConfigError as e:
        stats["refused"] += 1
        if any(names_ok(x, (), False) is None for x in (bars, news, weights)):
            return                # refused by the text rules first (the source lists are read after them)
        for var, spec, allowed, need in (("TB_BAR_SOURCES", bars, BAR_SOURCES, True),
                                         ("TB_NEWS_SOURCES", news, NEWS_SOURCES, False)):
            if names_ok(spec, allowed, need) is False:
                assert named(e, var), (var, spec, e.problems)
        return
    # accepted: then the feed's own parsing must accept the same values (nothing left to fail at build time)
    from tracer.data.factory import _names
    from tracer.news.dedupe import parse_weights
    assert _names(s.bar_sources, BAR_SOURCES, "TB_BAR_SOURCES")
    _names(s.news_sources, NEWS_SOURCES, "TB_NEWS_SOURCES")
    parse_weights(s.news_source_weights)
    stats["accepted"] += 1


def test_live_feed_sources_and_weights_refused_at_start(reliability):
    stats = {"run": 0, "refused": 0, "accepted": 0}
    _live_sources_case(stats=stats)
    for var, raw in (("TB_BAR_SOURCES", "alpaca,bogus"), ("TB_BAR_SOURCES", " , "),
                     ("TB_NEWS_SOURCES", "reuters"), ("TB_NEWS_SOURCE_WEIGHTS", "alpaca=lots"),
                     ("TB_NEWS_SOURCE_WEIGHTS", "alpaca=11"), ("TB_NEWS_SOURCE_WEIGHTS", "=1")):
        with pytest.raises(ConfigError) as ei:
            _load({"TB_FEED": "live", var: raw})
        assert named(ei.value, var), ei.value.problems
        stats["run"] += 1
        stats["refused"] += 1
    reliability("fuzz: config live feed sources and weights", trials=stats["run"], ok=True,
                inputs_fuzzed=stats["run"],
                checked="unknown sources / malformed weights refused at start naming the variable (TB_FEED=live)",
                **stats)


# --- the real process entry point --------------------------------------------------------------------------
# (script, variable, garbage): one or more per kind; values without NUL (the OS cannot pass one in the env)
PROCESS_CASES = [
    ("hybrid", "TB_MAX_POSITIONS", "five"),                              # int
    ("hybrid", "TB_LOOKBACK_BARS", "1_000"),                             # int, Python-only syntax
    ("hybrid", "TB_FEE_BPS", "NaN"),                                     # float
    ("futures", "TB_FUTURES_MAX_LEVERAGE", "126"),                       # float out of range
    ("hybrid", "TB_NOTIFY_CONSOLE", "perhaps"),                          # bool
    ("hybrid", "TB_FEED", "carrier-pigeon"),                             # choice
    ("hybrid", "TB_REPLAY_START", "9999-12-31T23:59:59-01:00"),          # datetime past 9999 UTC
    ("hybrid", "TB_SYMBOLS", "BT\u017f/USD"),                            # symbols, case-folding trick
    ("hybrid", "TB_DB_PATH", "state/\x1b[2Jt.db"),                       # path with a control character
    ("hybrid", "TB_TELEGRAM_BASE_URL", "javascript:alert(1)"),           # url
    ("futures", "TB_BYBIT_URL", "ftp://api-testnet.bybit.com"),          # url
    ("hybrid", "TB_PPLX_MODEL", "sonar\r\nX-Injected: 1"),               # str with CR/LF
]
SCRIPTS = {"hybrid": "scripts/hybrid_crypto_trader.py", "futures": "scripts/high_risk_futures_agent.py"}


def _run_agent(tmp: Path, agent: str, var: str, raw: str) -> subprocess.CompletedProcess:
    d = tmp / f"{agent}-{var}"
    d.mkdir()
    (d / "no.env").touch()        # an empty .env (a named one must exist)
    env = {k: v for k, v in os.environ.items() if not (k.startswith("TB_") or k.startswith("PPLX_"))}
    env.update({"TB_DB_PATH": str(d / "t.db"), "TB_LOG_DIR": str(d / "logs"), "TB_STATE_DIR": str(d / "state"),
                "TB_ACTIVE_PARAMS_PATH": str(d / "none.json"), "PYTHONUNBUFFERED": "1", var: raw})
    return subprocess.run([sys.executable, str(ROOT / SCRIPTS[agent]), "--once", "--interval", "0",
                           "--env-file", str(d / "no.env")], cwd=d, env=env, capture_output=True, text=True,
                          timeout=120)


def _one_per_kind() -> list[tuple[str, str, str]]:
    seen: set[str] = set()
    out = []
    for c in PROCESS_CASES:
        kind = next(f.metadata["kind"] for f in FIELDS if f.metadata["env"] == c[1])
        if kind not in seen or c[0] == "futures" and not any(x[0] == "futures" for x in out):
            seen.add(kind)
            out.append(c)
    return out


def test_agent_process_refuses_garbage_with_exit_2(tmp_path, reliability):
    _process_cases(tmp_path, reliability, _one_per_kind())


@pytest.mark.long
def test_agent_process_refuses_garbage_with_exit_2_long(tmp_path, reliability):
    _process_cases(tmp_path, reliability, PROCESS_CASES)


def _process_cases(tmp_path, reliability, cases) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: (c, _run_agent(tmp_path, *c)), cases))
    bad = []
    for (agent, var, raw), r in results:
        if r.returncode != 2 or var not in r.stderr or "refusing to start" not in r.stderr:
            bad.append(f"{agent} {var}={raw!r}: rc={r.returncode} stderr={r.stderr[-400:]!r}")
        assert not (tmp_path / f"{agent}-{var}" / "t.db").exists(), f"{var}: a DB was created before refusing"
    kinds = sorted({next(f.metadata["kind"] for f in FIELDS if f.metadata["env"] == v) for _, v, _ in cases})
    long = " long" if len(cases) == len(PROCESS_CASES) else ""
    reliability(f"fuzz: config garbage through the agent process entry point{long}", trials=len(cases),
                inputs_fuzzed=len(cases), ok=not bad, checked="exit code 2, stderr names the variable, nothing started",
                processes=len(cases), kinds=",".join(kinds), exit_2=len(cases) - len(bad),
                variables=",".join(v for _, v, _ in cases))
    assert not bad, "\n".join(bad)
