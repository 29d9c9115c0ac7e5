#!/usr/bin/env bash
# A separate environment with torchange (Apache-2.0), the reference implementation our damage
# model and xView2 metrics are checked against. torchange needs torchvision, which cannot sit
# beside the torch 2.13.0 CPU build of the main environment, hence its own venv.
# Usage: bash scripts/setup_oracle.sh [VENV_DIR]   (default .venv-oracle); then
#        TORCHANGE_PYTHON=VENV_DIR/bin/python python -m pytest -q
#
# The venv takes about 6.5 GB (torch 2.14.1 is a CUDA build, its NVIDIA libraries included).
# Exit status: 0 ready; 75 too little free disk, before or during the install (nothing is left
# behind; RSEDIT_ORACLE_DISK_GB sets the free space asked for, default 8); anything else an error.
set -euo pipefail
venv="${1:-.venv-oracle}"
need_gb="${RSEDIT_ORACLE_DISK_GB:-8}"
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

parent="$(dirname "$venv")"
mkdir -p "$parent"
free_kb="$(df -Pk "$parent" | awk 'NR == 2 {print $4}')"
if ((free_kb < need_gb * 1024 * 1024)); then
    echo "setup_oracle: $((free_kb / 1024 / 1024)) GB free under $parent, the torchange oracle asks for" \
        "$need_gb GB; not built. Free some disk, or set RSEDIT_ORACLE_DISK_GB lower at your own risk." >&2
    exit 75
fi

disk_full=0
finish() {
    local rc=$?
    if ((rc != 0)); then
        rm -rf "$venv" # a half-built venv only holds disk
        if ((disk_full)); then
            echo "setup_oracle: the disk filled during the install; the partial venv was removed." >&2
            rc=75
        fi
    fi
    exit "$rc"
}
trap finish EXIT

run() {
    # The output is kept in memory, not in a file: on a full disk a log could not be written.
    local out
    if ! out="$("$@" 2>&1)"; then
        ((${#out} > 3000)) && out="...${out: -3000}"
        printf '%s\n' "$out" >&2
        [[ $out == *"No space left on device"* || $out == *"Errno 28"* ]] && disk_full=1
        return 1
    fi
}

pip=("$venv/bin/python" -m pip install -q)
run python3 -m venv "$venv"
run "${pip[@]}" --upgrade pip
run "${pip[@]}" torch==2.14.1 torchvision==0.29.1
# torchange's own requirements must not move torch or torchvision off the pair above.
run "${pip[@]}" torchange==0.0.4 ever-beta safetensors numpy torch==2.14.1 torchvision==0.29.1
"$venv/bin/python" -c "import torchange, ever; print('torchange oracle ready:', torchange.__file__)"
