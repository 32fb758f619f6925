#!/usr/bin/env bash
# The main job on the embedded default (offline, CPU). Extra arguments go to `prefbench demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${PREFBENCH_VENV:-.venv}/bin/prefbench" demo "$@"
