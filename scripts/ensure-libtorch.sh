#!/usr/bin/env bash
# Creates the libtorch venv (torch from PyPI) at a stable path outside the
# clone, only when it is missing, and prints the LIBTORCH path to use.
# Idempotent: with the venv present it returns in a few milliseconds.
set -euo pipefail

TORCH_VERSION="${TUNEFLOW_TORCH_VERSION:-2.11.0}"
VENV="${TUNEFLOW_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tuneflow/torch-$TORCH_VERSION}"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.tuneflow-complete"

if [ ! -f "$stamp" ]; then
    echo "tuneflow: installing torch==$TORCH_VERSION into $VENV (once; about 3 GB)" >&2
    # The stamp is written last, so an interrupted install is redone from
    # scratch instead of being mistaken for a complete one.
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-cache-dir "torch==$TORCH_VERSION" numpy safetensors >&2
    touch "$stamp"
fi

for torch in "$VENV"/lib/python3*/site-packages/torch; do
    if [ -f "$torch/lib/libtorch_cpu.so" ]; then
        echo "$torch"
        exit 0
    fi
done
echo "tuneflow: $VENV has no torch/lib/libtorch_cpu.so; remove it and rerun" >&2
exit 1
