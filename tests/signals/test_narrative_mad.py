"""Narrative aggregation: MAD outlier removal before the trimmed mean, and the dispersion."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.models import Headline, Score, ScoredHeadline
from tracer.sentiment.narrative import mad_keep, narrative_score

NOW = datetime(2022, 3, 1, 12, 0, tzinfo=timezone.utc)


def _sh(value: float, age_min: float = 0.0, i: int = 0) -> ScoredHeadline:
    h = Headline(id=f"h{i}", published_at=NOW - timedelta(minutes=age_min), source="t", title=f"BTC {i}")
    return ScoredHeadline(headline=h, score=Score(value=value, label="neutral", scorer_id="s"))


def test_mad_keep_hand_computed():
    v = np.array([0.1, 0.2, 0.3, 0.4, -0.9])
    # median 0.2; |v - 0.2| = 0.1, 0, 0.1, 0.2, 1.1 -> MAD 0.1; limit 3 * 1.4826 * 0.1 = 0.44478
    assert mad_keep(v).tolist() == [True, True, True, True, False]
    assert mad_keep(v[:4]).all()                                     # n < 5: keep all
    assert mad_keep(np.array([0.3] * 6 + [-1.0])).all()             # MAD = 0: keep all


def test_outlier_removed_before_trimming_and_dispersion_reported():
    values = [0.1, 0.2, 0.3, 0.4, -0.9]                                 # -0.9 is the MAD outlier
    r = narrative_score([_sh(v, 0, i) for i, v in enumerate(values)], NOW, trim=0.1)
    # kept 0.1..0.4 (n=4 -> no trimming), equal weights: mean 0.25, std sqrt(0.0125)
    assert r.score == pytest.approx(0.25, abs=1e-12)
    assert r.count == 5
    assert r.effective_weight == pytest.approx(4.0)
    assert r.dispersion == pytest.approx(math.sqrt(0.0125), abs=1e-12)


def test_dispersion_is_the_weighted_std():
    # ages 0 and 90 min, halflife 90: weights 1 and 0.5 -> p = 2/3, 1/3
    r = narrative_score([_sh(0.6, 0, 0), _sh(-0.3, 90, 1)], NOW, halflife_min=90.0)
    mean = (2 / 3) * 0.6 + (1 / 3) * -0.3
    assert r.score == pytest.approx(mean)
    assert r.dispersion == pytest.approx(math.sqrt((2 / 3) * (0.6 - mean) ** 2 + (1 / 3) * (-0.3 - mean) ** 2))
    assert narrative_score([_sh(0.4, 0, 0)], NOW).dispersion == 0.0
    assert narrative_score([], NOW).dispersion == 0.0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=40))
def test_at_least_half_kept_and_dispersion_bounded(values):
    keep = mad_keep(np.array(values))
    assert keep.sum() * 2 >= len(values)
    r = narrative_score([_sh(v, 0, i) for i, v in enumerate(values)], NOW)
    assert 0.0 <= r.dispersion <= 1.0 + 1e-12
    assert -1.0 <= r.score <= 1.0
