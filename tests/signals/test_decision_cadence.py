"""The hybrid's decision cadence (TB_DECISION_EVERY_H): entries and signal exits only on bars that close at a multiple
of N hours UTC; every other bar is a hold, whatever the signal says."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from tracer.agents.futures import FuturesPolicy
from tracer.agents.hybrid import HybridPolicy
from tracer.agents.protocols import between_decisions
from tracer.config import ConfigError, load_settings
from tracer.models import Action, PositionSide

from policy_inputs import BOOK, RET, T0, held, signal

MIDNIGHT = T0                       # 2022-01-10 00:00 UTC: the daily close
assert (MIDNIGHT.hour, MIDNIGHT.minute) == (0, 0)


def _settings(**env: str):
    return load_settings({"TB_ACTIVE_PARAMS_PATH": "/nonexistent.json", "TB_MARKET_FILTER": "none", **env},
                         dotenv_path=None)


def test_decision_bars_are_the_multiples_of_the_cadence_in_utc():
    assert not between_decisions(MIDNIGHT, 24)
    assert [h for h in range(48) if not between_decisions(MIDNIGHT + timedelta(hours=h), 24)] == [0, 24]
    assert [h for h in range(24) if not between_decisions(MIDNIGHT + timedelta(hours=h), 8)] == [0, 8, 16]
    # the same instant in another zone is the same decision bar; a naive time is read as UTC
    tokyo = timezone(timedelta(hours=9))
    assert not between_decisions(MIDNIGHT.astimezone(tokyo), 24)
    assert between_decisions(datetime(2022, 1, 10, 0, tzinfo=tokyo), 24)      # 15:00 UTC the day before
    assert not between_decisions(datetime(2022, 1, 10), 24)
    # a bar that does not close on the hour is never a decision bar; 0 = every bar decides
    assert between_decisions(MIDNIGHT + timedelta(minutes=30), 24)
    assert not any(between_decisions(MIDNIGHT + timedelta(minutes=m), 0) for m in (0, 30, 61))


def test_off_by_default_and_a_named_variable_when_out_of_range():
    assert _settings().hybrid.decision_every_h == 0
    assert HybridPolicy(_settings()).decide(signal(Action.BUY, 1, ts=T0 + timedelta(hours=5)), None, BOOK,
                                            RET).decision == "enter"
    for bad in ("-1", "169"):
        with pytest.raises(ConfigError, match="TB_DECISION_EVERY_H"):
            _settings(TB_DECISION_EVERY_H=bad)


def test_hybrid_enters_and_exits_only_on_decision_bars():
    pol = HybridPolicy(_settings(TB_DECISION_EVERY_H="24"))
    later = MIDNIGHT + timedelta(hours=13)
    d = pol.decide(signal(Action.BUY, 1, ts=later), None, BOOK, RET)
    assert (d.decision, d.intent) == ("none", None) and "TB_DECISION_EVERY_H=24" in d.reason
    d = pol.decide(signal(Action.SELL, -1, ts=later), held(PositionSide.LONG), BOOK, RET)
    assert (d.decision, d.intent) == ("hold_position", None)
    entry = pol.decide(signal(Action.BUY, 1, ts=MIDNIGHT), None, BOOK, RET)
    assert entry.decision == "enter" and entry.intent is not None and entry.intent.order.created_at == MIDNIGHT
    assert pol.decide(signal(Action.SELL, -1, ts=MIDNIGHT), held(PositionSide.LONG), BOOK, RET).decision == "exit"


def test_the_futures_agent_does_not_read_it():
    s = _settings(TB_DECISION_EVERY_H="24")
    book = dataclasses.replace(BOOK, equity=10_000.0, cash=10_000.0, day_start_equity=10_000.0)
    assert FuturesPolicy(s).decide(signal(Action.SELL, -1, ts=MIDNIGHT + timedelta(hours=3)), None, book,
                                   RET).decision == "enter"
