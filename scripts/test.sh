#!/usr/bin/env bash
# The test suite (fast tests; add `-m slow` for the embedded-model tests). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${PREFBENCH_VENV:-.venv}/bin/python" -m pytest "$@"
