"""Reading numbers and times in venue answers (tracer.execution.venues.fields), shared by every venue client."""
from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from tracer.execution.venues.fields import finite, format_step, lenient, required, utc_from_ms


@pytest.mark.parametrize("garbage", ["abc", "NaN", "nan", "Infinity", "-inf", "1e999", "9" * 400, [1], {"a": 1},
                                     True, float("nan"), math.inf])
def test_finite_refuses_what_is_not_a_finite_number(garbage):
    with pytest.raises(ValueError):
        finite(garbage)


def test_finite_reads_numbers_and_defaults_only_when_absent():
    assert finite("0.0015") == 0.0015 and finite(3) == 3.0 and finite("-2.5") == -2.5
    assert finite(None, 7.0) == 7.0 and finite("", 7.0) == 7.0
    assert finite("0", 7.0) == 0.0                      # zero is said, not absent


def test_required_refuses_an_absent_number():
    for absent in (None, ""):
        with pytest.raises(ValueError, match="missing"):
            required(absent)
    assert required("42.1") == 42.1


def test_lenient_falls_back_on_garbage():
    assert lenient("12") == 12.0 and lenient("x", -1.0) == -1.0 and lenient(None, 5.0) == 5.0


def test_utc_from_ms():
    assert utc_from_ms("1700000000000") == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert utc_from_ms(1700000000123).microsecond == 123000
    for nothing in (None, "", "0", 0, -5, "abc", 10**30):
        assert utc_from_ms(nothing) is None


def test_format_step_floors_quantities_and_rounds_prices():
    assert format_step(0.0019, "0.001") == "0.001"
    assert format_step(0.1 + 0.2, 0.1) == "0.3"
    assert format_step(42123.456, 0.1, mode="nearest") == "42123.5"
    with pytest.raises(ValueError):
        format_step(1.0, 0)
