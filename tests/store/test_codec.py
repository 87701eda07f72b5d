"""Values into the DB as JSON: numbers (numpy's too), NaN as null, times as UTC ISO text, enums by value,
dataclasses and nested containers, keys sorted."""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import numpy as np
import pytest

from tracer.models import Action, Regime
from tracer.store.codec import to_json


def test_to_json_of_the_values_a_signal_records():
    reg = Regime(label="bull", trend_score=np.float64(0.4), volatility="normal", annual_vol=0.5, volume="normal",
                 participation=1.0, confidence=0.7, horizon_scores=(0.1, np.float32(0.25)))
    v = {"b": [1, 2.5, float("nan"), np.float64("nan"), np.int64(7), np.float64(0.1), True, None, "x"],
         "a": {3: datetime(2022, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "act": Action.BUY},
         "regime": reg, "t": (np.bool_(False), -0.0)}
    got = json.loads(to_json(v))
    assert list(got) == ["a", "b", "regime", "t"]
    assert got["b"] == [1, 2.5, None, None, 7, 0.1, True, None, "x"]
    assert type(got["b"][4]) is int and type(got["b"][6]) is bool
    assert got["a"] == {"3": "2022-01-02T03:04:05Z", "act": "buy"}
    assert got["regime"]["trend_score"] == 0.4 and got["regime"]["horizon_scores"] == [0.1, 0.25]
    assert got["t"][0] is False and math.copysign(1.0, got["t"][1]) == -1.0


def test_to_json_refuses_an_infinity():
    with pytest.raises(ValueError):
        to_json({"x": float("inf")})
