"""The agents' command line (tracer.agents.runner.parse_args): usage errors exit 2 like argparse's own."""
from __future__ import annotations

import pytest

from tracer.agents.runner import parse_args


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_interval_must_be_a_finite_number_not_below_0(value, capsys):
    """`--interval inf` (passed through by ./start_trading_system.sh --interval) made the agent wait for ever after
    its first cycle: no further cycle, no exit of a position, until a signal."""
    with pytest.raises(SystemExit) as e:
        parse_args("hybrid", ["--cycles", "2", "--interval", value])
    assert e.value.code == 2 and "--interval must be a number >= 0" in capsys.readouterr().err


def test_a_finite_interval_is_taken():
    assert parse_args("hybrid", ["--cycles", "2", "--interval", "0.5"]).interval == 0.5
