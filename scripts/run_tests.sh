#!/usr/bin/env bash
# Set up .venv with the test tools (when missing) and run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/run_tests.sh -k risk
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
exec .venv/bin/python -m pytest -n "${TB_TEST_WORKERS:-auto}" "$@"
