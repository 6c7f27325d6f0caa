#!/usr/bin/env bash
# The prepared GPU run (see bench/gpu.py for the steps and what each measures).
#   bash bench/gpu.sh [--out DIR]             # on the GPU machine: DIR/gpu.json + DIR/gpu.log
#   bash bench/gpu.sh --dry-run [--out DIR]   # same code paths on CPU with a tiny model (CI runs it)
# Python: $PYTHON, else the checkout's .venv, else python3 (the GPU machine's own torch).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -n "${PYTHON:-}" ]]; then
    py="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
    py=.venv/bin/python
else
    py=python3
fi
exec "$py" bench/gpu.py "$@"
