#!/usr/bin/env python3
"""Tracer Bullet futures agent (leveraged USD-M perpetuals, long and short). Thin entry point: the loop lives in tracer.agents.

Usage: scripts/high_risk_futures_agent.py [--once | --cycles N] [--interval SECONDS]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracer.agents.futures import build  # noqa: E402
from tracer.agents.runner import run_agent  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_agent("futures", build, sys.argv[1:]))
