#!/usr/bin/env bash
# A separate environment with torchange (Apache-2.0), the reference implementation our damage
# model and xView2 metrics are checked against. torchange needs torchvision, which cannot sit
# beside the torch 2.13.0 CPU build of the main environment, hence its own venv.
# Usage: bash scripts/setup_oracle.sh [VENV_DIR]   (default .venv-oracle); then
#        TORCHANGE_PYTHON=VENV_DIR/bin/python python -m pytest -q
set -euo pipefail
venv="${1:-.venv-oracle}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
constraints="$(mktemp)"
printf 'torch==2.14.1\ntorchvision==0.29.1\n' > "$constraints"
"$venv/bin/python" -m pip install -q -c "$constraints" torchange==0.0.4 ever-beta safetensors numpy
rm -f "$constraints"
"$venv/bin/python" -c "import torchange, ever; print('torchange oracle ready:', torchange.__file__)"
