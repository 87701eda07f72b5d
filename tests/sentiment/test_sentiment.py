"""Sentiment layer: scorer interface, cache, VADER, relevance and the narrative score."""
from __future__ import annotations

import csv
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.models import Headline, Score, ScoredHeadline
from tracer.sentiment.lexicon import CRYPTO_LEXICON, VaderScorer
from tracer.sentiment.narrative import (
    NarrativeResult,
    decay_weights,
    narrative_score,
    relevant,
    trimmed_weighted_mean,
)
from tracer.sentiment.scorer import CachedScorer, SentimentScorer
from tracer.symbols import is_relevant

BUNDLED_HEADLINES = Path(__file__).resolve().parents[2] / "tracer" / "data" / "bundled" / "headlines.csv"
NOW = datetime(2022, 5, 1, 12, 0, tzinfo=timezone.utc)


def _sh(value: float, age_min: float, title: str = "t", scorer_id: str = "test") -> ScoredHeadline:
    h = Headline(id=f"{title}-{age_min}", published_at=NOW - timedelta(minutes=age_min), source="x", title=title)
    return ScoredHeadline(h, Score(value=value, label="neutral", scorer_id=scorer_id))


@pytest.fixture(scope="module")
def vader() -> VaderScorer:
    return VaderScorer()


# ----------------------------------------------------------------------------- decay weights

def test_decay_weights_hand_computed():
    # halflife 90 min: w = 0.5 ** (age / 90)
    #   age   0 -> 0.5**0   = 1
    #   age  45 -> 0.5**0.5 = 1/sqrt(2) = 0.70710678...
    #   age  90 -> 0.5**1   = 0.5
    #   age 180 -> 0.5**2   = 0.25
    w = decay_weights(np.array([0.0, 45.0, 90.0, 180.0]), 90.0)
    np.testing.assert_allclose(w, [1.0, 1 / math.sqrt(2), 0.5, 0.25], rtol=0, atol=1e-12)


def test_decay_weights_reject_future_and_bad_halflife():
    with pytest.raises(ValueError, match="future"):
        decay_weights(np.array([10.0, -0.5]), 90.0)
    with pytest.raises(ValueError):
        decay_weights(np.array([1.0]), 0.0)


# ----------------------------------------------------------------------- trimmed weighted mean

def test_trimmed_mean_small_n_is_plain_weighted_mean():
    # n = 3 < 5: no trimming.
    # (1*1 + (-1)*0.5 + 0.5*0.25) / (1 + 0.5 + 0.25) = (1 - 0.5 + 0.125) / 1.75 = 0.625 / 1.75 = 0.357142857...
    assert trimmed_weighted_mean([1.0, -1.0, 0.5], [1.0, 0.5, 0.25]) == pytest.approx(0.625 / 1.75, abs=1e-12)


def test_trimmed_mean_drops_both_ends():
    # n = 6, trim = 0.2 -> floor(0.2*6) = floor(1.2) = 1 dropped at each end (by value):
    # drop -0.9 (lowest) and 0.5 (highest); keep 0.1, 0.2, 0.3, 0.4 with weights 1, 2, 3, 4:
    # (0.1*1 + 0.2*2 + 0.3*3 + 0.4*4) / (1+2+3+4) = (0.1 + 0.4 + 0.9 + 1.6) / 10 = 3.0 / 10 = 0.3
    values = [0.3, -0.9, 0.1, 0.5, 0.4, 0.2]
    weights = [3.0, 9.0, 1.0, 9.0, 4.0, 2.0]
    assert trimmed_weighted_mean(values, weights, trim=0.2) == pytest.approx(0.3, abs=1e-12)


def test_trimming_removes_an_outlier():
    # Nine headlines at +0.2 and one at -1.0, equal weights, trim 0.1 -> floor(0.1*10) = 1 per end.
    # Untrimmed: (9*0.2 - 1.0) / 10 = 0.8 / 10 = 0.08.
    # Trimmed: drop -1.0 and one 0.2 -> eight 0.2s -> 0.2 exactly. The outlier is gone.
    values = [0.2] * 9 + [-1.0]
    weights = [1.0] * 10
    assert trimmed_weighted_mean(values, weights, trim=0.0) == pytest.approx(0.08, abs=1e-12)
    assert trimmed_weighted_mean(values, weights, trim=0.1) == pytest.approx(0.2, abs=1e-12)


def test_trimmed_mean_edge_cases():
    assert trimmed_weighted_mean([], []) == 0.0
    assert trimmed_weighted_mean([0.5, -0.5], [0.0, 0.0]) == 0.0
    # n = 5, trim 0.1: floor(0.5) = 0 -> nothing dropped; mean of 0,0,0,0,1 = 0.2
    assert trimmed_weighted_mean([0, 0, 0, 0, 1.0], [1.0] * 5, trim=0.1) == pytest.approx(0.2)
    # n = 4 < 5: no trimming even with a large trim; mean of 0,0,0,1 = 0.25
    assert trimmed_weighted_mean([0, 0, 0, 1.0], [1.0] * 4, trim=0.4) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        trimmed_weighted_mean([1.0], [1.0, 2.0])


def test_trimmed_mean_does_not_depend_on_input_order():
    values = [0.5, 0.5, -0.2, 0.1, 0.5, 0.9, -0.7]
    weights = [0.1, 0.9, 1.0, 0.3, 0.5, 0.2, 0.4]
    a = trimmed_weighted_mean(values, weights, trim=0.2)
    b = trimmed_weighted_mean(values[::-1], weights[::-1], trim=0.2)
    assert a == pytest.approx(b, abs=1e-12)


# ---------------------------------------------------------------------------- narrative score

def test_narrative_score_hand_computed():
    # ages 0, 90, 180 min, halflife 90 -> weights 1, 0.5, 0.25; n = 3 so no trimming.
    # score = (0.8*1 + (-0.4)*0.5 + 0.2*0.25) / 1.75 = (0.8 - 0.2 + 0.05) / 1.75 = 0.65 / 1.75 = 0.3714285...
    scored = [_sh(0.8, 0, scorer_id="b"), _sh(-0.4, 90, scorer_id="a"), _sh(0.2, 180, scorer_id="b")]
    r = narrative_score(scored, NOW, halflife_min=90.0)
    assert isinstance(r, NarrativeResult)
    assert r.score == pytest.approx(0.65 / 1.75, abs=1e-12)
    assert r.count == 3
    assert r.effective_weight == pytest.approx(1.75)
    assert r.scorer_id == "a,b"
    assert r.latest_age_min == pytest.approx(0.0)


def test_narrative_score_empty():
    r = narrative_score([], NOW)
    assert r == NarrativeResult(score=0.0, count=0, effective_weight=0.0, scorer_id="", latest_age_min=None)


def test_narrative_score_future_headline_raises():
    with pytest.raises(ValueError, match="future"):
        narrative_score([_sh(0.5, 10), _sh(0.5, -1)], NOW)


def test_narrative_score_trims_outlier_and_reports_kept_weight():
    # ten headlines all at age 0 (weight 1): nine at +0.3, one at -1.0; trim 0.1 drops 1 per end
    # -> eight kept, each weight 1 -> effective_weight 8, score 0.3
    scored = [_sh(0.3, 0, title=f"h{i}") for i in range(9)] + [_sh(-1.0, 0, title="bad")]
    r = narrative_score(scored, NOW)
    assert r.score == pytest.approx(0.3, abs=1e-12)
    assert r.count == 10
    assert r.effective_weight == pytest.approx(8.0)


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(st.tuples(st.floats(-1.0, 1.0), st.floats(0.0, 1e6)), max_size=40),
    halflife=st.floats(1e-3, 1e5),
    trim=st.floats(0.0, 0.49),
)
def test_narrative_score_always_in_range(items, halflife, trim):
    scored = [_sh(v, age, title=f"h{i}") for i, (v, age) in enumerate(items)]
    r = narrative_score(scored, NOW, halflife_min=halflife, trim=trim)
    assert -1.0 <= r.score <= 1.0
    assert r.effective_weight >= 0.0
    assert r.count == len(items)


# ------------------------------------------------------------------------------------- VADER

def test_vader_implements_protocol(vader):
    assert isinstance(vader, SentimentScorer)
    assert vader.scorer_id.startswith("vader")
    assert vader.scorer_id == "vader-3.3.2+crypto1"  # pinned version in the venv; update with the dependency


def test_vader_labels(vader):
    pos, neg, neu = vader.score([
        "Bitcoin surges to new all-time high as ETF approved",
        "Exchange hacked, ETH plunges",
        "Bitcoin price today",
    ])
    assert pos.label == "positive" and pos.value >= 0.05
    assert neg.label == "negative" and neg.value <= -0.05
    assert neu.label == "neutral" and -0.05 < neu.value < 0.05
    for s in (pos, neg, neu):
        assert -1.0 <= s.value <= 1.0
        assert s.scorer_id == vader.scorer_id


def test_vader_tuned_lexicon_applied(vader):
    # "bullish"/"bearish" are not in the standard VADER lexicon; the tuned update adds them.
    plain = VaderScorer(lexicon_update={})
    assert plain.score(["Analysts turn bullish"])[0].label == "neutral"
    assert vader.score(["Analysts turn bullish"])[0].label == "positive"
    assert vader.score(["Analysts turn bearish"])[0].label == "negative"
    assert CRYPTO_LEXICON["bullish"] > 0 > CRYPTO_LEXICON["bearish"]
    # the update is per instance: a plain analyzer is unaffected
    assert "bullish" not in plain._analyzer.lexicon


# ------------------------------------------------------------------------------------- cache

class _CountingScorer:
    scorer_id = "counting-1"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def score(self, texts: Sequence[str]) -> list[Score]:
        self.calls.append(list(texts))
        return [Score(value=len(t) / 100.0, label="neutral", scorer_id=self.scorer_id) for t in texts]


def test_cache_scores_each_text_once():
    inner = _CountingScorer()
    cache = CachedScorer(inner)
    assert isinstance(cache, SentimentScorer)
    assert cache.scorer_id == "counting-1"
    first = cache.score(["a", "bb", "a"])          # "a" miss, "bb" miss, "a" duplicate -> hit
    assert inner.calls == [["a", "bb"]]
    assert (cache.hits, cache.misses) == (1, 2)
    second = cache.score(["bb", "ccc", "a"])        # bb hit, ccc miss, a hit
    assert inner.calls == [["a", "bb"], ["ccc"]]
    assert (cache.hits, cache.misses) == (3, 3)
    assert [s.value for s in first] == [0.01, 0.02, 0.01]
    assert [s.value for s in second] == [0.02, 0.03, 0.01]
    cache.score(["a", "bb", "ccc"])                 # all cached
    assert len(inner.calls) == 2
    assert (cache.hits, cache.misses) == (6, 3)


def test_cache_is_bounded_lru():
    inner = _CountingScorer()
    cache = CachedScorer(inner, maxsize=2)
    cache.score(["a", "b"])
    cache.score(["a"])            # touch "a": "b" is now least recently used
    cache.score(["c"])            # evicts "b"
    assert len(cache) == 2
    cache.score(["a"])            # still cached
    assert inner.calls == [["a", "b"], ["c"]]
    cache.score(["b"])            # evicted -> scored again
    assert inner.calls[-1] == ["b"]


def test_cache_wraps_vader(vader):
    cache = CachedScorer(vader)
    a = cache.score(["Exchange hacked, ETH plunges"])
    b = cache.score(["Exchange hacked, ETH plunges"])
    assert a == b and cache.scorer_id == vader.scorer_id
    assert (cache.hits, cache.misses) == (1, 1)


# --------------------------------------------------------------------------------- relevance

@pytest.mark.parametrize("symbol,text,expected", [
    ("SOL/USD", "SOL breaks above $100", True),
    ("SOL/USD", "Solana outage halts block production", True),
    ("SOL/USD", "A new solution for layer-2 scaling", False),
    ("SOL/USD", "Sol Invictus and other myths", False),        # upper-case ticker only
    ("SOL/USD", "sol is down today", False),
    ("BTC/USD", "Bitcoin Cash hard fork scheduled", False),
    ("BTC/USD", "Bitcoin Cash and Bitcoin both rally", True),
    ("BTC/USD", "BTC reclaims $40K", True),
    ("BTC/USD", "Bitcoins seized by police", True),
    ("ETH/USD", "Ethereum Classic hit by 51% attack", False),
    ("ETH/USD", "Tether prints more USDT", False),               # 'ether' inside 'Tether'
    ("DOGE/USD", "Dogecoin jumps after Musk tweet", True),
    ("DOGE/USD", "Doge-themed memecoins rally", True),
])
def test_is_relevant_whole_words(symbol, text, expected):
    assert is_relevant(symbol, text) is expected


def test_relevant_filters_titles():
    hs = [Headline(id=str(i), published_at=NOW, source="x", title=t)
          for i, t in enumerate(["SOL rallies", "solution found", "Solana DeFi TVL grows"])]
    assert [h.title for h in relevant("SOL/USD", hs)] == ["SOL rallies", "Solana DeFi TVL grows"]


def _bundled_rows() -> list[dict[str, str]]:
    with BUNDLED_HEADLINES.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("base", ["BTC", "ETH", "SOL", "DOGE"])
def test_relevance_agrees_with_bundled_labels(base):
    rows = _bundled_rows()
    assert len(rows) > 7000
    label = [base in r["symbols"].split(";") if r["symbols"] else False for r in rows]
    pred = [is_relevant(base, r["title"]) for r in rows]
    n = len(rows)
    agree = sum(a == b for a, b in zip(label, pred)) / n
    tp = sum(a and b for a, b in zip(label, pred))
    precision = tp / max(1, sum(pred))
    recall = tp / max(1, sum(label))
    # Overall agreement is dominated by true negatives, so also check the positives.
    assert agree >= 0.97, (base, agree)
    assert precision >= 0.97 and recall >= 0.97, (base, precision, recall)


def test_source_weights_scale_each_headline_in_the_narrative():
    from datetime import datetime, timezone
    from tracer.models import Headline, Score, ScoredHeadline
    from tracer.sentiment.narrative import narrative_score
    now = datetime(2022, 3, 1, 12, tzinfo=timezone.utc)
    pair = [ScoredHeadline(Headline("a", now, "alpaca", "Bitcoin up"), Score(1.0, "positive", "t")),
            ScoredHeadline(Headline("b", now, "perplexity/coindesk", "Bitcoin down"), Score(-1.0, "negative", "t"))]
    # equal ages; weights 1.0 and 0.5 (provider/publisher falls back to the provider): (1 - 0.5) / 1.5 = 1/3
    res = narrative_score(pair, now, source_weights={"alpaca": 1.0, "perplexity": 0.5})
    assert res.score == pytest.approx(1 / 3)
    assert res.effective_weight == pytest.approx(1.5)
    assert narrative_score(pair, now).score == pytest.approx(0.0)       # no weights: a plain mean
