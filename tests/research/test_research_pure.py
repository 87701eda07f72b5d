"""Research pure functions: higher-timeframe bars, thesis rules, evidence words, plans, outcomes, hit rates."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from tracer.models import Action, Regime, Signal
from tracer.research.evaluation import GROUPS, hit_rates, outcome
from tracer.research.evidence import evidence_line, price_words
from tracer.research.plan import PlanParams, make_plan
from tracer.research.thesis import alignment, divergence_side, rank_key, thesis
from tracer.research.timeframes import label_of, parse_timeframe, resample
from tracer.research.universe import UniverseConfigError, from_mapping

UTC = timezone.utc
H = timedelta(hours=1)


def hourly(start: datetime, n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * 1.002
    low = np.minimum(open_, close) * 0.998
    idx = pd.DatetimeIndex([start + i * H for i in range(n)], name="ts").as_unit("ns")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": rng.uniform(1, 10, n)}, index=idx)


def test_timeframe_labels_parse_and_round_trip():
    assert parse_timeframe("4h") == timedelta(hours=4) and parse_timeframe("1d") == timedelta(days=1)
    assert label_of(parse_timeframe("1d")) == "1d" and label_of(timedelta(hours=4)) == "4h"
    for bad in ("", "4", "h4", "0h", "4x"):
        with pytest.raises(ValueError):
            parse_timeframe(bad)


def test_resample_keeps_only_complete_bins_closed_by_now_and_aggregates_exactly():
    start = datetime(2022, 1, 1, 1, tzinfo=UTC)            # starts mid-bin: the first 4h bin is partial
    bars = hourly(start, 60)
    now = datetime(2022, 1, 3, 10, 30, tzinfo=UTC)          # the 08:00 4h bin is still forming
    out = resample(bars, H, timedelta(hours=4), now)
    assert out.index[0] == pd.Timestamp("2022-01-01T04:00Z")
    assert out.index[-1] == pd.Timestamp("2022-01-03T04:00Z")       # closes 08:00 <= now; 08:00 bin not yet
    assert (out.index + pd.Timedelta(hours=4) <= pd.Timestamp(now)).all()
    b = bars.loc["2022-01-02T00:00Z":"2022-01-02T03:00Z"]
    row = out.loc[pd.Timestamp("2022-01-02T00:00Z")]
    assert row["open"] == b["open"].iloc[0] and row["close"] == b["close"].iloc[-1]
    assert row["high"] == b["high"].max() and row["low"] == b["low"].min()
    assert row["volume"] == pytest.approx(b["volume"].sum())
    # bars after now passed by mistake change nothing
    more = hourly(start, 80)
    more.iloc[:60] = bars.values
    pd.testing.assert_frame_equal(resample(more, H, timedelta(hours=4), now), out)
    # a missing hour drops its bin
    holed = bars.drop(pd.Timestamp("2022-01-02T01:00Z"))
    assert pd.Timestamp("2022-01-02T00:00Z") not in resample(holed, H, timedelta(hours=4), now).index
    daily = resample(bars, H, timedelta(days=1), now)
    assert list(daily.index) == [pd.Timestamp("2022-01-02T00:00Z")]


def sig(direction: int, composite: float, *, price: float | None = None, narrative: float = 0.0, count: int = 0,
        div: float | None = None, trigger: float = 0.5, action: Action = Action.HOLD, quality: float = 3.0,
        vol: str = "normal", atr: float = 2.0) -> Signal:
    p = composite if price is None else price
    return Signal(symbol="BTC/USD", ts=datetime(2022, 3, 1, tzinfo=UTC), price=100.0, action=action,
                  direction=direction, reason="", quality=quality, conviction=5.0,
                  regime=Regime(label="bull", trend_score=0.1, volatility=vol, annual_vol=0.5, volume="normal",
                                participation=1.0, confidence=0.5, horizon_scores=(0.1,)),
                  price_score=p, narrative=narrative, divergence=(narrative - p) if div is None else div,
                  divergence_trigger=trigger, volume_z=0.0, rsi=50.0, atr=atr, size_fraction=0.0,
                  headline_count=count, scorer_id="x", inputs={"composite": composite})


def test_alignment_labels_and_score():
    up = {"1h": sig(1, 0.4), "4h": sig(1, 0.2), "1d": sig(1, 0.3)}
    a = alignment(up)
    assert (a.label, a.sign, a.agree, a.size_ratio) == ("aligned up", 1, 1.0, 0.5) and a.score == 0.5
    mixed = alignment({"1h": sig(1, 0.4), "4h": sig(-1, -0.2), "1d": sig(0, 0.0)})
    assert mixed.label == "mixed" and mixed.sign == 0 and mixed.score == 0
    lean = alignment({"1h": sig(-1, -0.4), "4h": sig(-1, -0.2), "1d": sig(0, 0.05)})
    assert lean.label == "leaning down" and lean.score < 0
    assert alignment({"1h": sig(0, 0.0)}).label == "flat"


def test_thesis_rules_buy_sell_watch_and_no_buy_against_a_bearish_divergence():
    up = {"1h": sig(1, 0.4, action=Action.BUY), "4h": sig(1, 0.2), "1d": sig(0, 0.05)}
    t = thesis(up)
    assert (t.action, t.readiness, t.side) == ("Buy", "Now", 1)
    # the same tape with headlines far more bearish than the price on one timeframe: no Buy
    bear = dict(up, **{"4h": sig(1, 0.2, narrative=-0.5, count=3, price=0.5)})
    assert divergence_side(bear["4h"]) == -1
    assert thesis(bear).action == "Watch"
    # a negative divergence below the trigger, or without headlines, is no divergence
    assert divergence_side(sig(1, 0.3, price=0.6, narrative=0.3, count=2)) == 0
    assert divergence_side(sig(1, 0.6, price=0.9, count=0)) == 0
    down = {"1h": sig(-1, -0.3), "4h": sig(-1, -0.4, action=Action.SELL), "1d": sig(-1, -0.2)}
    t = thesis(down)
    assert (t.action, t.readiness, t.risk_band) == ("Sell", "Near", "Low")
    assert thesis(dict(down, **{"1d": sig(-1, -0.2, narrative=0.6, count=2, price=-0.2)})).action == "Watch"
    assert thesis({"1h": sig(1, 0.3), "4h": sig(-1, -0.3)}).action == "Watch"
    assert thesis({"1h": sig(1, 0.3, vol="extreme"), "4h": sig(1, 0.3)}).risk_band == "High"
    w = thesis({"1h": sig(1, 0.3), "4h": sig(-1, -0.3)})
    assert w.readiness == "Later" and w.risk_band == "High"
    # ranking: Buy/Sell before Watch, Now before Near
    ranked = sorted([("A", w), ("B", thesis(down)), ("C", thesis(up))], key=lambda x: rank_key(*x))
    assert [s for s, _ in ranked] == ["C", "B", "A"]


def test_evidence_words_match_the_numbers():
    sigs = {"1h": sig(1, 0.7, price=0.7), "4h": sig(1, 0.2, price=0.2), "1d": sig(0, 0.05, price=-0.05)}
    line = evidence_line("BTC/USD", sigs, alignment(sigs), thesis(sigs))
    assert "strongly up on 1h (+0.70)" in line and "slightly up on 4h (+0.20)" in line
    assert "flat on 1d (-0.05)" in line and "no relevant headlines" in line
    assert line.endswith("→ Buy (Medium risk, Near).")
    assert price_words(-0.45) == "down" and price_words(-0.65) == "strongly down"
    bear = {"1h": sig(1, 0.2, price=0.6, narrative=-0.3, count=4)}
    line = evidence_line("BTC/USD", bear, alignment(bear), thesis(bear))
    assert "headlines bearish (-0.30 from 4 stories)" in line
    assert "news more bearish than the tape on 1h (divergence -0.90)" in line and "→ Watch" in line


def test_plan_levels_from_atr():
    now = datetime(2022, 3, 1, 12, tzinfo=UTC)
    p = make_plan("4h", timedelta(hours=4), 100.0, 2.0, 1, False, now, 12, PlanParams(0.25, 1.5, (1.0, 2.0)))
    assert (p.entry_low, p.entry_high, p.stop, p.risk) == (99.5, 100.0, 97.0, 3.0)
    assert p.targets == (103.0, 106.0) and p.horizon_end == now + timedelta(hours=48)
    s = make_plan("1h", H, 100.0, 2.0, -1, True, now, 24, PlanParams())
    assert s.stop == 103.0 and s.targets == (97.0, 94.0) and s.entry_low == 100.0 and s.conditional


def call_bars() -> pd.DataFrame:
    return hourly(datetime(2022, 3, 1, tzinfo=UTC), 72, seed=3)


def test_outcome_uses_only_bars_between_the_call_and_its_horizon():
    bars = call_bars()
    as_of, end = datetime(2022, 3, 1, 12, tzinfo=UTC), datetime(2022, 3, 2, 12, tzinfo=UTC)
    price = float(bars.loc[:"2022-03-01T11:00Z", "close"].iloc[-1])
    o = outcome("Buy", 1, price, 1.0, price - 1.0, price + 1.0, as_of, end, bars)
    win = bars.loc["2022-03-01T12:00Z":"2022-03-02T11:00Z"]
    assert o.exit_price == win["close"].iloc[-1] and o.exit_ts == end
    assert o.move == pytest.approx(o.exit_price - price) and o.r_multiple == pytest.approx(o.move / 1.0)
    assert o.hit == (o.move > 0)
    changed = bars.copy()
    changed.loc[:"2022-03-01T11:00Z"] *= 3.0            # before the call
    changed.loc["2022-03-02T12:00Z":] *= 0.2            # after the horizon
    assert outcome("Buy", 1, price, 1.0, price - 1.0, price + 1.0, as_of, end, changed) == o
    # a short gains when price falls; R is signed the same way
    s = outcome("Sell", -1, price, 1.0, price + 1.0, price - 1.0, as_of, end, bars)
    assert s.move == pytest.approx(-o.move) and s.hit == (s.move > 0)
    # not enough data (horizon beyond the data, or a hole) -> no outcome
    assert outcome("Buy", 1, price, 1.0, price - 1, price + 1, as_of, end + timedelta(days=5), bars) is None
    assert outcome("Buy", 1, price, 1.0, price - 1, price + 1, as_of, end,
                   bars.drop(pd.Timestamp("2022-03-01T20:00Z"))) is None


def test_outcome_of_a_call_between_hours_starts_at_the_bar_after_its_price():
    """A call at 12:30 is priced at the 12:00 close (the last hourly close it knows): its window starts with the
    12:00-13:00 bar, as a call at 12:00 would, so no part of the move from P is left out of the touches."""
    bars = call_bars()
    end = datetime(2022, 3, 2, 12, tzinfo=UTC)
    price = float(bars.loc[:"2022-03-01T11:00Z", "close"].iloc[-1])
    bars.loc[pd.Timestamp("2022-03-01T12:00Z"), "high"] = price + 5.0        # the target is reached in that bar
    on_the_hour = outcome("Buy", 1, price, 1.0, price - 1.0, price + 1.0, datetime(2022, 3, 1, 12, tzinfo=UTC),
                          end, bars)
    between = outcome("Buy", 1, price, 1.0, price - 1.0, price + 1.0, datetime(2022, 3, 1, 12, 30, tzinfo=UTC),
                      end, bars)
    assert between == on_the_hour and between.first_touch == "target" and between.mfe_r == pytest.approx(5.0)


def test_outcome_stop_counts_first_when_a_bar_holds_both_and_watch_is_judged_on_staying_put():
    idx = pd.DatetimeIndex([pd.Timestamp("2022-03-01T12:00Z") + i * pd.Timedelta(hours=1) for i in range(3)])
    bars = pd.DataFrame({"open": [100, 100, 100], "high": [104, 101, 101], "low": [96, 99, 99],
                         "close": [100.5, 100.5, 100.5], "volume": [1, 1, 1]}, index=idx, dtype=float)
    as_of = datetime(2022, 3, 1, 12, tzinfo=UTC)
    o = outcome("Buy", 1, 100.0, 2.0, 98.0, 102.0, as_of, as_of + 3 * H, bars)
    assert o.first_touch == "stop" and o.mfe_r == 2.0 and o.mae_r == 2.0
    w = outcome("Watch", 1, 100.0, 2.0, 98.0, 102.0, as_of, as_of + 3 * H, bars)
    assert w.hit and w.r_multiple is None


def test_hit_rates_groups_add_up_to_the_whole():
    rng = np.random.default_rng(7)
    rows = [{"action": a, "risk_band": rng.choice(["Low", "Medium", "High"]), "readiness": rng.choice(["Now", "Near"]),
             "timeframe": rng.choice(["1h", "4h"]), "hit": bool(rng.integers(0, 2)),
             "r_multiple": None if a == "Watch" else float(rng.normal())}
            for a in rng.choice(["Buy", "Sell", "Watch"], 200)]
    hr = hit_rates(rows)
    assert hr["overall"]["calls"] == 200
    for g in GROUPS:
        parts = hr[f"by_{g}"].values()
        assert sum(p["calls"] for p in parts) == 200
        assert sum(p["hits"] for p in parts) == hr["overall"]["hits"]
        assert sum(p["total_r"] for p in parts) == pytest.approx(hr["overall"]["total_r"])
    assert hr["by_action"]["Watch"]["avg_r"] is None and hr["by_action"]["Watch"]["r_calls"] == 0
    buys = [r for r in rows if r["action"] == "Buy"]
    assert hr["by_action"]["Buy"]["hit_rate"] == pytest.approx(sum(r["hit"] for r in buys) / len(buys))


def test_universe_config_is_strict():
    cfg = from_mapping({"symbols": ["btc", "ETHUSDT"], "timeframes": [{"name": "1d"}, "4h"]}, "t")
    assert cfg.symbols == ("BTC/USD", "ETH/USD") and [t.label for t in cfg.timeframes] == ["4h", "1d"]
    for bad in ({"symbol": ["BTC"]}, {"timeframes": ["15m"]}, {"timeframes": [{"name": "4h", "horizon_bars": 0}]},
                {"plan": {"stop_atr": -1}}, {"timeframes": ["4h", "240m"]}):
        with pytest.raises(UniverseConfigError):
            from_mapping(bad, "t")


def test_the_shipped_universe_file_equals_the_built_in_defaults():
    from pathlib import Path

    from tracer.research.universe import default_config, load_config

    shipped = load_config(Path(__file__).resolve().parents[2] / "config" / "universe.yaml")
    assert shipped.as_dict() == default_config().as_dict()
    assert len(shipped.symbols) == 9 and [t.label for t in shipped.timeframes] == ["1h", "4h", "1d"]


def test_naive_baseline_is_the_sign_of_the_20_day_trend_and_reads_no_later_bar():
    from tracer.research.evaluation import baseline_comparison, baseline_outcome, trend_side
    idx = pd.date_range("2022-01-01", periods=24 * 30, freq="h", tz="UTC")
    close = np.linspace(100.0, 130.0, len(idx))                      # a steady rise
    bars = pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 1.0},
                        index=idx)
    as_of = idx[24 * 25].to_pydatetime()
    assert trend_side(bars, as_of) == 1
    later = bars.copy()
    later.loc[later.index >= as_of, ["open", "high", "low", "close"]] = 1.0    # every later bar altered
    assert trend_side(later, as_of) == 1                                      # nothing after as_of is read
    falling = bars.assign(close=close[::-1])
    assert trend_side(falling, as_of) == -1                                   # a fall: short
    assert trend_side(bars, idx[24 * 10].to_pydatetime()) is None            # fewer than 20 days of bars
    o = baseline_outcome(1, float(close[24 * 25 - 1]), 2.0, as_of, idx[24 * 26].to_pydatetime(), bars)
    assert o is not None and o.hit and o.r_multiple == pytest.approx(o.move / 2.0)
    rows = [{"action": "Buy", "hit": 1, "r_multiple": 0.5, "baseline_hit": 0, "baseline_r": -0.2},
            {"action": "Sell", "hit": 0, "r_multiple": -1.0, "baseline_hit": 1, "baseline_r": 0.4},
            {"action": "Watch", "hit": 1, "r_multiple": None, "baseline_hit": None, "baseline_r": None}]
    cmp = baseline_comparison(rows)
    assert cmp["calls"] == 2 and cmp["model"]["hits"] == 1 and cmp["baseline"]["hits"] == 1
    assert cmp["model"]["avg_r"] == pytest.approx(-0.25) and cmp["baseline"]["avg_r"] == pytest.approx(0.1)
