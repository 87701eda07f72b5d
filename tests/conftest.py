"""Test-wide isolation."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_promoted_params_from_the_checkout(monkeypatch):
    """A parameter set promoted in this checkout (config/active_params.json) must not change what the
    tests see: only a path a test names itself (TB_ACTIVE_PARAMS_PATH) is read."""
    import tracer.optimize.params as params
    real = params.active_overlay

    def overlay(path):
        return {} if str(path) == "config/active_params.json" else real(path)

    monkeypatch.setattr(params, "active_overlay", overlay)
