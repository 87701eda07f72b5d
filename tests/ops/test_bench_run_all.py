"""bench/run_all.py: the memory row runs in a process of its own and reports 100 cycles and the last one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_memory_row_in_its_own_process():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--memory-cycles", "120"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    name, after_100, after_n, growth = json.loads(r.stdout.strip().splitlines()[-1])
    assert "1m bars" in name and after_100.startswith("after 100 cycles: ") and after_100.endswith(" MB")
    assert after_n.startswith("after 120: ") and "growth" in growth
