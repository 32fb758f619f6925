#!/usr/bin/env bash
# The main job on the embedded default (offline, CPU): `prefbench run` with the quick preset of ifeval-lite,
# five objectives, to a finished report in runs/ifeval-lite-quick/. Extra arguments go to `prefbench run`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${PREFBENCH_VENV:-.venv}/bin/prefbench" run "$@"
