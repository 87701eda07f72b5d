#!/usr/bin/env bash
# Set up .venv with the test tools (when missing) and run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/run_tests.sh -k risk
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
# worksteal: an idle worker takes tests queued on a busy one (the suite has a few minute-long tests)
exec .venv/bin/python -m pytest -n "${TB_TEST_WORKERS:-auto}" --dist worksteal "$@"
