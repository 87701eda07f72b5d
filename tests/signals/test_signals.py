"""Signal layer: hand-computed formulas, data-derived regime confidence, and evaluate() on real data.

Every expected number below is worked out by hand from the docstring formula (arithmetic in the
comments), never by calling the function under test a second time.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.models import Action, Headline, Regime, Score, ScoredHeadline, Signal
from tracer.signals.conviction import confirmation, conviction_score, regime_alignment, volatility_score
from tracer.signals.divergence import divergence, divergence_trigger
from tracer.signals.evaluate import EvalParams, direction_of, evaluate
from tracer.signals.gates import GateThresholds, check_gates, size_fraction
from tracer.signals.price import price_score, volume_damping
from tracer.signals.quality import signal_quality
from tracer.signals.regime import (
    horizon_trend,
    market_regime,
    regime_confidence,
    trend_label,
    volatility_label,
    volume_label,
)

H = timedelta(hours=1)
BUNDLED = Path(__file__).resolve().parents[2] / "tracer" / "data" / "bundled"
BTC_CSV = BUNDLED / "candles_1h_BTCUSDT.csv"
WINDOW = 256
PARAMS = EvalParams(gates=GateThresholds(min_quality=1.0, min_conviction=2.0))


def approx(x: float):
    return pytest.approx(x, rel=0, abs=1e-12)


def regime(label: str = "sideways", volatility: str = "normal", confidence: float = 1.0) -> Regime:
    return Regime(label=label, trend_score=0.0, volatility=volatility, annual_vol=0.5, volume="normal",
                  participation=1.0, confidence=confidence)


def read_candles(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, index_col="timestamp", parse_dates=True)


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    df = read_candles(BTC_CSV)
    assert len(df) > 2000 and df.index.is_monotonic_increasing
    return df


def headline(i: int, at: datetime, value: float, title: str = "Bitcoin BTC market update") -> ScoredHeadline:
    label = "positive" if value > 0.05 else "negative" if value < -0.05 else "neutral"
    return ScoredHeadline(Headline(id=f"h{i}", published_at=at, source="test", title=f"{title} {i}"),
                          Score(value, label, "test"))


def window_at(df: pd.DataFrame, end: int) -> tuple[pd.DataFrame, datetime]:
    """The 256 bars ending with row ``end - 1``, and the time they are all closed (``now``)."""
    w = df.iloc[end - WINDOW:end]
    return w, w.index[-1].to_pydatetime() + H


def assert_signal_in_range(s: Signal) -> None:
    for name in ("price", "quality", "conviction", "price_score", "narrative", "divergence",
                 "divergence_trigger", "volume_z", "rsi", "atr", "size_fraction"):
        assert math.isfinite(getattr(s, name)), (name, getattr(s, name))
    assert 0.0 <= s.quality <= 10.0
    assert 1.0 <= s.conviction <= 10.0
    assert -1.0 <= s.price_score <= 1.0
    assert -1.0 <= s.narrative <= 1.0
    assert -2.0 <= s.divergence <= 2.0
    assert 0.0 <= s.rsi <= 100.0
    assert s.atr >= 0.0
    assert s.direction in (-1, 0, 1)
    assert 0.0 <= s.regime.confidence <= 1.0
    assert -1.0 <= s.regime.trend_score <= 1.0
    assert s.regime.label in ("strong_bull", "bull", "sideways", "bear", "strong_bear")
    if s.action is Action.HOLD:
        assert s.size_fraction == 0.0
        assert s.reason.startswith("hold")
    else:
        assert 0.2 <= s.size_fraction <= 1.0
        assert s.action is (Action.BUY if s.direction > 0 else Action.SELL)
        assert s.gates["passed"] is True


# ------------------------------------------------------------------------------ price / volume

def test_volume_damping_hand_computed():
    # damp = clip(1 + 0.25 * min(vz, 0), 0.5, 1)
    assert volume_damping(0.0) == 1.0          # 1 + 0
    assert volume_damping(1.5) == 1.0          # min(1.5, 0) = 0 -> 1
    assert volume_damping(-0.4) == approx(0.9)  # 1 - 0.1
    assert volume_damping(-1.0) == 0.75        # 1 - 0.25
    assert volume_damping(-2.0) == 0.5         # 1 - 0.5
    assert volume_damping(-3.0) == 0.5         # 1 - 0.75 = 0.25 -> clipped to 0.5
    assert volume_damping(float("nan")) == 1.0  # unknown volume: no damping


def test_price_score_flat_and_trending():
    # flat prices: RSI defined as 50 -> rsi component 0; all z-scores 0 (constant windows) -> score 0
    flat = price_score(np.full(120, 100.0), 0.0)
    assert flat.score == 0.0 and flat.rsi == 50.0 and flat.rsi_component == 0.0
    # a steady rise has RSI 100 -> rsi component (100 - 50) / 50 = 1 -> score >= 0.30 - 0.35 - 0.35 ...
    up = price_score(100.0 * np.exp(0.01 * np.arange(120)), 0.0)
    assert up.rsi == 100.0 and up.rsi_component == 1.0 and up.score > 0
    # damping multiplies the raw score: vz = -2 halves it
    half = price_score(100.0 * np.exp(0.01 * np.arange(120)), -2.0)
    assert half.volume_damping == 0.5
    assert half.score == approx(up.score * 0.5)


# ------------------------------------------------------------------------------ divergence

def test_divergence_trigger_hand_computed():
    # trigger = base * clip(1 - 0.15 * vz, 0.6, 1.4), base 0.5
    assert divergence_trigger(0.5, 0.0) == 0.5                  # 0.5 * 1
    assert divergence_trigger(0.5, 2.0) == approx(0.35)         # 0.5 * (1 - 0.30) = 0.5 * 0.7
    assert divergence_trigger(0.5, -2.0) == approx(0.65)        # 0.5 * (1 + 0.30) = 0.5 * 1.3
    assert divergence_trigger(0.5, 4.0) == approx(0.30)         # 1 - 0.6 = 0.4 -> clip 0.6 -> 0.3
    assert divergence_trigger(0.5, 10.0) == approx(0.30)        # 1 - 1.5 < 0.6 -> clip 0.6 -> 0.3
    assert divergence_trigger(0.5, -4.0) == approx(0.70)        # 1 + 0.6 = 1.6 -> clip 1.4 -> 0.7
    assert divergence_trigger(0.5, -50.0) == approx(0.70)       # clip 1.4
    assert divergence_trigger(0.4, 1.0) == approx(0.34)         # 0.4 * 0.85
    assert divergence_trigger(0.5, float("nan")) == 0.5         # unknown volume -> vz 0


def test_divergence_is_narrative_minus_price():
    assert divergence(0.6, -0.2) == approx(0.8)
    assert divergence(-1.0, 1.0) == -2.0


# ------------------------------------------------------------------------------ quality

def test_quality_points_components():
    # narrative 0.5, 3 headlines, price 0.2, vz 1.5, RSI 50, no divergence
    #   sentiment 3 * 0.5 = 1.5; momentum 3 * 0.2 = 0.6; volume clip(1.5, 0, 2) = 1.5; RSI 50 -> 0
    #   aligned: same sign, |0.5| >= 0.1 and |0.2| >= 0.1 -> +1; contrarian: not diverged -> 0
    #   total = 1.5 + 0.6 + 1.5 + 0 + 1 + 0 = 4.6
    q = signal_quality(0.5, 3, 0.2, 1.5, 50.0, False)
    assert q.sentiment == approx(1.5)
    assert q.momentum == approx(0.6)
    assert q.volume == 1.5
    assert q.rsi_extreme == 0.0
    assert q.aligned_bonus == 1.0 and q.contrarian_bonus == 0.0
    assert q.total == approx(4.6)


def test_quality_no_headline_no_sentiment_points():
    # no relevant headline: sentiment 0 and no aligned bonus even with a narrative value
    # momentum 3 * 0.4 = 1.2; volume: vz -1 -> clip 0; total 1.2
    q = signal_quality(0.9, 0, 0.4, -1.0, 50.0, False)
    assert q.sentiment == 0.0 and q.aligned_bonus == 0.0
    assert q.volume == 0.0
    assert q.total == approx(1.2)


def test_quality_volume_points_capped_at_two():
    assert signal_quality(0.0, 0, 0.0, 3.0, 50.0, False).volume == 2.0   # clip(3, 0, 2)
    assert signal_quality(0.0, 0, 0.0, 0.7, 50.0, False).volume == 0.7
    assert signal_quality(0.0, 0, 0.0, float("nan"), 50.0, False).volume == 0.0


@pytest.mark.parametrize("rsi_value, points", [
    (10.0, 1.5), (19.99, 1.5),      # < 20
    (20.0, 1.0), (25.0, 1.0), (29.99, 1.0),   # < 30
    (30.0, 0.0), (50.0, 0.0), (70.0, 0.0),    # neutral band, boundaries included
    (70.01, 1.0), (80.0, 1.0),      # > 70
    (80.01, 1.5), (95.0, 1.5),      # > 80
])
def test_quality_rsi_extreme_points(rsi_value, points):
    assert signal_quality(0.0, 0, 0.0, 0.0, rsi_value, False).rsi_extreme == points


def test_quality_aligned_bonus_rules():
    assert signal_quality(0.1, 1, 0.1, 0.0, 50.0, False).aligned_bonus == 1.0    # both exactly 0.1
    assert signal_quality(0.09, 1, 0.5, 0.0, 50.0, False).aligned_bonus == 0.0   # narrative too weak
    assert signal_quality(0.5, 1, 0.09, 0.0, 50.0, False).aligned_bonus == 0.0   # price too weak
    assert signal_quality(-0.5, 1, 0.5, 0.0, 50.0, False).aligned_bonus == 0.0   # opposite signs
    assert signal_quality(-0.5, 1, -0.5, 0.0, 50.0, False).aligned_bonus == 1.0  # both bearish


def test_quality_contrarian_bonus():
    # bullish news (0.6) vs falling tape (-0.4), RSI 25 oversold, divergence triggered:
    #   sentiment 1.8 + momentum 1.2 + volume 0 + RSI(<30) 1.0 + aligned 0 + contrarian 1 = 5.0
    q = signal_quality(0.6, 2, -0.4, 0.0, 25.0, True)
    assert (q.sentiment, q.momentum, q.rsi_extreme) == (approx(1.8), approx(1.2), 1.0)
    assert q.contrarian_bonus == 1.0 and q.aligned_bonus == 0.0
    assert q.total == approx(5.0)
    # same without a triggered divergence: 4.0
    assert signal_quality(0.6, 2, -0.4, 0.0, 25.0, False).total == approx(4.0)
    # bearish news with RSI 75 (overbought), diverged: contrarian
    assert signal_quality(-0.6, 2, 0.4, 0.0, 75.0, True).contrarian_bonus == 1.0
    # RSI extreme pointing against the narrative: no contrarian bonus
    assert signal_quality(0.6, 2, -0.4, 0.0, 75.0, True).contrarian_bonus == 0.0
    assert signal_quality(-0.6, 2, 0.4, 0.0, 25.0, True).contrarian_bonus == 0.0


def test_quality_capped_at_ten():
    # sentiment 3 (|1.0|) + momentum 3 + volume 2 (vz 2.5 clipped) + RSI 85 -> 1.5 + aligned 1
    # + contrarian 0 (bullish news, RSI not < 30) = 10.5 -> capped at 10
    q = signal_quality(1.0, 5, 1.0, 2.5, 85.0, True)
    assert q.sentiment + q.momentum + q.volume + q.rsi_extreme + q.aligned_bonus == approx(10.5)
    assert q.total == 10.0
    # |narrative| above 1 is clamped to 1 in the sentiment points
    assert signal_quality(1.7, 1, 0.0, 0.0, 50.0, False).sentiment == 3.0


# ------------------------------------------------------------------------------ regime

def test_trend_label_boundaries():
    assert trend_label(0.9) == "strong_bull"
    assert trend_label(0.5) == "strong_bull"      # >= 0.5
    assert trend_label(0.4999) == "bull"
    assert trend_label(0.15) == "bull"            # >= 0.15
    assert trend_label(0.1499) == "sideways"
    assert trend_label(0.0) == "sideways"
    assert trend_label(-0.1499) == "sideways"
    assert trend_label(-0.15) == "bear"           # <= -0.15
    assert trend_label(-0.4999) == "bear"
    assert trend_label(-0.5) == "strong_bear"     # <= -0.5
    assert trend_label(-0.9) == "strong_bear"


def test_volatility_label_boundaries():
    assert volatility_label(0.0) == "low"
    assert volatility_label(0.3499) == "low"
    assert volatility_label(0.35) == "normal"     # low < 0.35 <= normal
    assert volatility_label(0.7999) == "normal"
    assert volatility_label(0.80) == "high"       # normal < 0.80 <= high
    assert volatility_label(1.2999) == "high"
    assert volatility_label(1.30) == "extreme"    # high < 1.30 <= extreme
    assert volatility_label(5.0) == "extreme"


def test_volume_label_boundaries():
    assert volume_label(0.5) == "low"
    assert volume_label(0.7999) == "low"
    assert volume_label(0.8) == "normal"          # low < 0.8 <= normal
    assert volume_label(1.0) == "normal"
    assert volume_label(1.25) == "normal"         # normal <= 1.25 < high
    assert volume_label(1.2501) == "high"


def test_horizon_trend_hand_computed():
    # y = [0, 1, 3], h = 3: x - mean = [-1, 0, 1], y - mean = [-4/3, -1/3, 5/3]
    #   b = (4/3 + 5/3) / 2 = 1.5; one-bar returns [1, 2] -> population std 0.5
    #   t = b * h / (sigma * sqrt(h)) = 1.5 * 3 / (0.5 * sqrt(3)) = 9 / sqrt(3) = 3 * sqrt(3)
    #   score = tanh(t / 2) = tanh(1.5 * sqrt(3))
    assert horizon_trend(np.array([0.0, 1.0, 3.0]), 3) == approx(math.tanh(1.5 * math.sqrt(3)))
    # the score only looks at the last h values
    assert horizon_trend(np.array([50.0, -7.0, 0.0, 1.0, 3.0]), 3) == approx(math.tanh(1.5 * math.sqrt(3)))
    assert horizon_trend(np.full(30, 4.6), 24) == 0.0            # flat: sigma 0 -> 0
    assert horizon_trend(np.arange(10, dtype=float), 24) == 0.0  # window shorter than h -> 0


def test_horizon_trend_exponential_trends_with_noise():
    rng = np.random.default_rng(7)
    n = 200
    noise = rng.normal(0.0, 0.002, n)
    up = np.log(100.0 * np.exp(0.003 * np.arange(n))) + noise     # +0.3%/bar exponential uptrend
    down = np.log(100.0 * np.exp(-0.003 * np.arange(n))) + noise
    for h in (24, 72, 168):
        u, d = horizon_trend(up, h), horizon_trend(down, h)
        assert 0.5 < u <= 1.0, (h, u)
        assert -1.0 <= d < -0.5, (h, d)
    r = market_regime(np.exp(up), np.ones(n), 24 * 365)
    assert r.label == "strong_bull" and len(r.horizon_scores) == 3
    assert market_regime(np.exp(down), np.ones(n), 24 * 365).label == "strong_bear"


def test_regime_confidence_hand_computed():
    # scores [0.3, 0.2, 0.1], combined 0.2: agreement |mean(1, 1, 1)| = 1;
    #   distance to the nearest boundary: |0.2 - 0.15| = 0.05 -> margin 0.05 / 0.15 = 1/3
    #   conf = 0.5 * 1 + 0.5 * 1/3 = 2/3; extreme volatility: * 0.75 = 0.5
    hs = np.array([0.3, 0.2, 0.1])
    assert regime_confidence(hs, 0.2, "normal") == approx(2 / 3)
    assert regime_confidence(hs, 0.2, "extreme") == approx(0.5)
    # split horizons [0.3, -0.3, 0]: signs mean (1 - 1 + 0) / 3 = 0 -> agreement 0;
    #   combined 0: distance 0.15 -> margin 1 -> conf 0.5
    assert regime_confidence(np.array([0.3, -0.3, 0.0]), 0.0, "normal") == approx(0.5)
    # two up one down: agreement 1/3; combined 0.5 sits on a boundary -> margin 0 -> conf 1/6
    assert regime_confidence(np.array([0.9, 0.9, -0.3]), 0.5, "normal") == approx(1 / 6)


def test_market_regime_volatility_and_participation():
    # 1% up, 1% down alternately: log returns +-log(1.01)... use exact alternating log steps
    n = 200
    steps = np.where(np.arange(n - 1) % 2 == 0, 0.01, -0.01)
    close = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(steps)]))
    volume = np.ones(n)
    volume[-24:] = 2.0
    r = market_regime(close, volume, 24 * 365)
    # last 24 log returns alternate +-0.01: population std 0.01 -> annual 0.01 * sqrt(8760) = 0.936
    assert r.annual_vol == pytest.approx(0.01 * math.sqrt(8760), rel=1e-9)
    assert r.volatility == "high"
    # participation: mean(last 24) / mean(last 168) = 2 / ((144 * 1 + 24 * 2) / 168) = 2 / (192/168) = 1.75
    assert r.participation == approx(1.75)
    assert r.volume == "high"


def test_regime_confidence_is_data_derived_on_bundled_btc(btc):
    ends = np.linspace(WINDOW, len(btc), 200).astype(int)
    confs, labels = [], set()
    for end in ends:
        w = btc.iloc[end - WINDOW:end]
        r = market_regime(w["close"].to_numpy(), w["volume"].to_numpy(), 24 * 365)
        assert 0.0 <= r.confidence <= 1.0
        assert -1.0 <= r.trend_score <= 1.0
        confs.append(r.confidence)
        labels.add(r.label)
    distinct = len(set(round(c, 9) for c in confs))
    assert distinct >= 100, distinct        # not a constant, nor a handful of levels
    assert max(confs) - min(confs) > 0.5
    assert {"bull", "bear"} <= labels, labels


# ------------------------------------------------------------------------------ conviction

def test_regime_alignment_hand_computed():
    # 0.5 + (raw - 0.5) * confidence
    assert regime_alignment(1, regime("bull", confidence=1.0)) == approx(0.8)
    assert regime_alignment(1, regime("bull", confidence=0.5)) == approx(0.65)    # 0.5 + 0.3 * 0.5
    assert regime_alignment(1, regime("strong_bull", confidence=1.0)) == approx(1.0)
    assert regime_alignment(1, regime("strong_bear", confidence=1.0)) == approx(0.0)
    assert regime_alignment(1, regime("sideways", confidence=1.0)) == approx(0.5)
    # short: mirrored raw = 1 - long raw
    assert regime_alignment(-1, regime("bull", confidence=1.0)) == approx(0.2)    # 1 - 0.8
    assert regime_alignment(-1, regime("strong_bear", confidence=0.8)) == approx(0.9)  # 0.5 + 0.5 * 0.8
    assert regime_alignment(-1, regime("bear", confidence=0.5)) == approx(0.65)   # raw 0.8 -> 0.5 + 0.15
    # no direction, or no confidence: neutral 0.5
    assert regime_alignment(0, regime("strong_bull", confidence=1.0)) == 0.5
    assert regime_alignment(1, regime("strong_bull", confidence=0.0)) == 0.5


def test_volatility_score_table():
    assert [volatility_score(regime(volatility=v)) for v in ("low", "normal", "high", "extreme")] == \
           [0.7, 1.0, 0.6, 0.2]


def test_confirmation_hand_computed():
    assert confirmation(0.3, 0.4, 0.2, 2) == 1.0            # volume 0.5 + agreement 0.5
    assert confirmation(0.0, 0.4, 0.2, 2) == 0.5            # vz must be > 0
    assert confirmation(float("nan"), 0.4, 0.2, 2) == 0.5   # unknown volume: no volume part
    assert confirmation(1.0, 0.4, 0.2, 0) == 0.5            # no headline: no agreement
    assert confirmation(1.0, -0.4, 0.2, 3) == 0.5           # news and price disagree
    assert confirmation(-1.0, -0.4, -0.2, 3) == 0.5         # both bearish agree
    assert confirmation(-1.0, 0.4, -0.2, 3) == 0.0


def test_conviction_score_hand_computed():
    # quality 6 -> 4 * 0.6 = 2.4; long in bull with confidence 1 -> alignment 0.8 -> 3 * 0.8 = 2.4;
    # normal vol -> 2 * 1.0 = 2.0; confirmation (vz 1 > 0, news and price agree) 1.0 -> 1.0
    # total = 2.4 + 2.4 + 2.0 + 1.0 = 7.8
    c = conviction_score(6.0, 1, regime("bull"), 1.0, 0.5, 0.3, 2)
    assert c.quality_part == approx(2.4)
    assert c.regime_alignment == approx(0.8)
    assert c.volatility_score == 1.0
    assert c.confirmation == 1.0
    assert c.total == approx(7.8)
    # short in high vol, sideways with confidence 0.4: 4 * 0.3 = 1.2; alignment 0.5 -> 1.5; 2 * 0.6 = 1.2;
    # confirmation: vz -1 -> 0, no headlines -> 0; total = 1.2 + 1.5 + 1.2 + 0 = 3.9
    assert conviction_score(3.0, -1, regime("sideways", "high", 0.4), -1.0, 0.0, -0.3, 0).total == approx(3.9)


def test_conviction_score_clamped_to_1_10():
    # quality 0, long in strong_bear (alignment 0), extreme vol (2 * 0.2 = 0.4), no confirmation:
    # 0 + 0 + 0.4 + 0 = 0.4 -> clamped up to 1
    low = conviction_score(0.0, 1, regime("strong_bear", "extreme", 1.0), -1.0, 0.0, 0.0, 0)
    assert low.quality_part + 3 * low.regime_alignment + 2 * low.volatility_score + low.confirmation == approx(0.4)
    assert low.total == 1.0
    # quality 12 (out of range input) in the best case: 4.8 + 3 + 2 + 1 = 10.8 -> clamped to 10
    high = conviction_score(12.0, 1, regime("strong_bull", "normal", 1.0), 1.0, 0.5, 0.5, 1)
    assert high.total == 10.0
    # the maximum with a valid quality is exactly 10: 4 + 3 + 2 + 1
    assert conviction_score(10.0, 1, regime("strong_bull"), 1.0, 0.5, 0.5, 1).total == approx(10.0)


# ------------------------------------------------------------------------------ gates

T = GateThresholds(min_quality=4.0, min_conviction=5.0, adverse_regime_penalty=1.0, extreme_vol_penalty=2.0)


def test_gates_pass_in_supportive_regime():
    g = check_gates(4.0, 5.0, 1, regime("bull"), T)             # both thresholds met with equality
    assert g.passed and g.failed == () and g.required_quality == 4.0 and g.required_conviction == 5.0
    assert check_gates(4.0, 5.0, -1, regime("bear"), T).passed  # short in bear: not adverse
    assert check_gates(4.0, 5.0, 1, regime("sideways"), T).required_quality == 4.0
    assert check_gates(4.0, 5.0, -1, regime("sideways"), T).required_quality == 4.0


@pytest.mark.parametrize("direction, label", [(1, "bear"), (1, "strong_bear"), (-1, "bull"), (-1, "strong_bull")])
def test_gates_adverse_regime_penalty(direction, label):
    # required quality = 4 + 1 (adverse) = 5
    g = check_gates(4.5, 9.0, direction, regime(label), T)
    assert g.required_quality == 5.0
    assert not g.passed and g.failed == ("quality",)
    assert check_gates(5.0, 9.0, direction, regime(label), T).passed


def test_gates_extreme_vol_penalty():
    # long in bull, extreme vol: 4 + 2 = 6
    g = check_gates(5.9, 9.0, 1, regime("bull", "extreme"), T)
    assert g.required_quality == 6.0 and g.failed == ("quality",)
    # adverse and extreme together: 4 + 1 + 2 = 7
    g = check_gates(6.9, 9.0, 1, regime("bear", "extreme"), T)
    assert g.required_quality == 7.0 and not g.passed
    assert check_gates(7.0, 9.0, 1, regime("bear", "extreme"), T).passed
    # high (not extreme) volatility: no penalty
    assert check_gates(4.0, 9.0, 1, regime("bull", "high"), T).required_quality == 4.0


def test_gates_no_direction_and_conviction():
    g = check_gates(9.0, 9.0, 0, regime("strong_bear"), T)
    assert not g.passed and g.failed == ("no_direction",)
    assert g.required_quality == 4.0                       # no direction is never "adverse"
    g = check_gates(4.0, 4.99, 1, regime("bull"), T)
    assert g.failed == ("conviction",)
    g = check_gates(1.0, 1.0, 0, regime("bull"), T)
    assert g.failed == ("no_direction", "quality", "conviction")


def test_size_fraction_linear_from_20_to_100_percent():
    # 0.2 + 0.8 * clip((c - 2) / (10 - 2), 0, 1)
    assert size_fraction(2.0, 2.0, True) == approx(0.2)     # minimum passing conviction -> 20%
    assert size_fraction(10.0, 2.0, True) == approx(1.0)    # 100%
    assert size_fraction(6.0, 2.0, True) == approx(0.6)     # 0.2 + 0.8 * 4/8
    assert size_fraction(4.0, 2.0, True) == approx(0.4)     # 0.2 + 0.8 * 2/8
    assert size_fraction(8.0, 6.0, True) == approx(0.6)     # 0.2 + 0.8 * 2/4
    assert size_fraction(1.0, 2.0, True) == approx(0.2)     # below min: clipped
    assert size_fraction(11.0, 2.0, True) == approx(1.0)    # above 10: clipped
    xs = np.linspace(2.0, 10.0, 17)
    fr = np.array([size_fraction(x, 2.0, True) for x in xs])
    assert np.allclose(np.diff(fr), 0.8 / 16)               # linear in between
    assert size_fraction(3.0, 2.0, False) == 1.0            # no confidence sizing: full size
    assert size_fraction(10.0, 10.0, True) == approx(0.2)   # degenerate span does not divide by 0


# ------------------------------------------------------------------------------ direction

def test_direction_of_hand_computed():
    # composite = 0.6 * price + 0.4 * narrative with headlines
    d, comp = direction_of(0.5, -0.25, 2, 0.1)                 # 0.30 - 0.10 = 0.20
    assert d == 1 and comp == pytest.approx(0.2)
    d, comp = direction_of(0.2, -0.8, 1, 0.1)                  # 0.12 - 0.32 = -0.20
    assert d == -1 and comp == pytest.approx(-0.2)
    d, comp = direction_of(0.1, 0.05, 1, 0.1)                  # 0.06 + 0.02 = 0.08 < 0.1
    assert d == 0 and comp == pytest.approx(0.08)
    # without headlines the price alone decides (the narrative value is ignored)
    assert direction_of(0.05, 0.9, 0, 0.1) == (0, 0.05)
    assert direction_of(-0.3, 0.9, 0, 0.1) == (-1, -0.3)
    assert direction_of(0.1, 0.0, 0, 0.1) == (1, 0.1)           # |composite| == min_score counts


# ------------------------------------------------------------------------------ evaluate

def _headlines_before(now: datetime) -> list[ScoredHeadline]:
    return [headline(0, now - timedelta(minutes=10), 0.8),
            headline(1, now - timedelta(minutes=95), -0.3),
            headline(2, now - timedelta(hours=5), 0.5),
            headline(3, now - timedelta(hours=9), -0.9),
            headline(4, now - timedelta(minutes=1), 0.2),
            headline(5, now, 0.6)]          # published exactly at now: allowed (age 0)


def test_evaluate_on_bundled_data_in_range(btc):
    ends = np.linspace(WINDOW, len(btc), 40).astype(int)
    actions = set()
    for k, end in enumerate(ends):
        bars, now = window_at(btc, end)
        scored = _headlines_before(now) if k % 2 else []
        s = evaluate("BTC/USD", bars, scored, now, PARAMS)
        assert isinstance(s, Signal)
        assert s.symbol == "BTC/USD" and s.ts == now
        assert s.price == bars["close"].iloc[-1]
        assert s.headline_count == len(scored)
        assert s.scorer_id == ("test" if scored else "")
        assert s.inputs["bars"] == WINDOW
        assert_signal_in_range(s)
        actions.add(s.action)
    assert Action.HOLD in actions and (Action.BUY in actions or Action.SELL in actions)


def test_evaluate_narrative_moves_the_signal(btc):
    bars, now = window_at(btc, 3000)
    plain = evaluate("BTC/USD", bars, [], now, PARAMS)
    bull = evaluate("BTC/USD", bars, [headline(i, now - timedelta(minutes=5 * i), 0.9) for i in range(5)], now, PARAMS)
    # 5 headlines of 0.9: trimmed weighted mean of equal values = 0.9
    assert bull.narrative == approx(0.9)
    # the narrative enters the scores scaled by its confidence: min(1, 5/3) = 1 for the count,
    # 1 - 0.5 * 0 = 1 for the dispersion (equal values), 0.7 for an unknown scorer ("test") -> 0.7
    assert bull.inputs["narrative"]["confidence"] == approx(0.7)
    assert bull.divergence == approx(0.9 * 0.7 - bull.price_score)
    assert bull.price_score == plain.price_score                 # news never changes the price score
    assert bull.quality >= plain.quality                         # sentiment points add up
    with pytest.raises(ValueError):                              # a headline from the future is look-ahead
        evaluate("BTC/USD", bars, [headline(9, now + timedelta(minutes=1), 0.5)], now, PARAMS)


def test_evaluate_no_lookahead_truncated_file(btc, tmp_path):
    lines = BTC_CSV.read_text().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    assert len(rows) == len(btc)
    for end in (WINDOW, 1000, 2777, 5000, len(btc) - 1):
        t = btc.index[end - 1].to_pydatetime() + H      # every bar up to row end-1 is closed at t
        # the "live" file: only what existed at t
        cut = tmp_path / f"cut_{end}.csv"
        cut.write_text(header + "".join(rows[:end]))
        truncated = read_candles(cut)
        assert truncated.index[-1] == btc.index[end - 1]
        from_full = btc[btc.index + H <= t].iloc[-WINDOW:]
        from_cut = truncated[truncated.index + H <= t].iloc[-WINDOW:]
        scored = _headlines_before(t)
        a = evaluate("BTC/USD", from_full, scored, t, PARAMS)
        b = evaluate("BTC/USD", from_cut, scored, t, PARAMS)
        assert a == b
        assert a.inputs["last_bar"] == btc.index[end - 1]


def test_evaluate_deterministic(btc):
    bars, now = window_at(btc, 4321)
    scored = _headlines_before(now)
    a = evaluate("BTC/USD", bars, scored, now, PARAMS)
    b = evaluate("BTC/USD", bars.copy(), list(reversed(scored)), now, PARAMS)
    c = evaluate("BTC/USD", bars, scored, now, PARAMS)
    assert a == c
    assert a == b                   # neither a copy of the frame nor the headline order matters
    assert a.reason == c.reason and a.inputs == c.inputs and a.gates == c.gates


def test_evaluate_size_fraction_uses_gate_params(btc):
    params = EvalParams(gates=GateThresholds(min_quality=1.0, min_conviction=2.0, confidence_sizing=False))
    for end in np.linspace(WINDOW, len(btc), 25).astype(int):
        bars, now = window_at(btc, end)
        s = evaluate("BTC/USD", bars, [], now, params)
        assert s.size_fraction == (0.0 if s.action is Action.HOLD else 1.0)
        s2 = evaluate("BTC/USD", bars, [], now, PARAMS)
        if s2.action is not Action.HOLD:
            assert s2.size_fraction == approx(0.2 + 0.8 * min(max((s2.conviction - 2.0) / 8.0, 0.0), 1.0))


# ------------------------------------------------------------------------------ property

T0 = datetime(2023, 3, 1, tzinfo=timezone.utc)


@st.composite
def ohlcv_windows(draw):
    n = draw(st.integers(60, WINDOW))
    rets = draw(st.lists(st.floats(-0.08, 0.08, allow_nan=False), min_size=n, max_size=n))
    start = draw(st.floats(1e-4, 1e5))
    wick_hi = draw(st.lists(st.floats(0.0, 0.05), min_size=n, max_size=n))
    wick_lo = draw(st.lists(st.floats(0.0, 0.05), min_size=n, max_size=n))
    vol = draw(st.lists(st.floats(1e-3, 1e6, allow_nan=False), min_size=n, max_size=n))
    close = start * np.exp(np.cumsum(rets))
    open_ = np.concatenate([[start], close[:-1]])
    high = np.maximum(open_, close) * (1.0 + np.array(wick_hi))
    low = np.minimum(open_, close) * (1.0 - np.array(wick_lo))
    idx = pd.date_range(T0, periods=n, freq=H, tz="UTC", name="ts")
    bars = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": vol}, index=idx)
    heads = draw(st.lists(st.tuples(st.floats(0.0, 600.0), st.floats(-1.0, 1.0)), max_size=8))
    return bars, heads


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ohlcv_windows())
def test_evaluate_property_never_raises_and_in_range(case):
    bars, heads = case
    now = bars.index[-1].to_pydatetime() + H
    scored = [headline(i, now - timedelta(minutes=age), v) for i, (age, v) in enumerate(heads)]
    s = evaluate("BTC/USD", bars, scored, now, PARAMS)
    assert_signal_in_range(s)
    assert s.headline_count == len(scored)


def test_narrative_confidence_from_count_dispersion_and_scorer():
    from tracer.signals.scoring import narrative_confidence, scorer_weight
    assert scorer_weight("finbert:/models/finbert") == 1.0
    assert scorer_weight("tfidf-lr@abc") == 0.9
    assert scorer_weight("vader-3.3.2+crypto1") == 0.7
    assert scorer_weight("finbert:x,vader-3.3.2") == 0.7          # mixed: the weakest
    assert scorer_weight("") == 0.0
    # 1 headline: 1/3; dispersion 0.4: 1 - 0.2 = 0.8; trained model 0.9 -> 0.24
    assert float(narrative_confidence(1, 0.4, 0.9)) == approx(1 / 3 * 0.8 * 0.9)
    # many headlines that disagree completely (dispersion >= 1): half weight
    assert float(narrative_confidence(12, 1.5, 1.0)) == approx(0.5)
    assert float(narrative_confidence(0, 0.0, 1.0)) == 0.0
