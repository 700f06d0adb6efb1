#!/usr/bin/env bash
# Create .venv and install anglesim with its test and documentation tools; CPU PyTorch first.
#
# PyTorch is installed on its own, pinned (ANGLESIM_TORCH, default torch==2.13.0), before
# anglesim: anglesim itself asks only for torch>=2.2, which the pinned CPU build satisfies, so
# pip never resolves a plain "torch" to a multi-GB CUDA build. On a machine whose package
# index serves CUDA builds by default, point pip at a CPU index, e.g.
#   PIP_EXTRA_INDEX_URL=<your CPU wheel index> bash scripts/setup.sh
# Re-running is cheap: a stamp file records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH=${ANGLESIM_TORCH:-torch==2.13.0}
stamp=.venv/.anglesim-installed
want="$TORCH $(sha1sum pyproject.toml | cut -c1-12)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet "$TORCH"
fi
.venv/bin/python -m pip install --quiet -e ".[dev,distributed,docs]"
echo "$want" > "$stamp"
