#!/usr/bin/env bash
# Creates a venv with moto's S3-compatible server (from PyPI) at a stable
# path outside the clone, only when it is missing, and prints the path of
# its `moto_server`. The remote-cache tests start it on the loopback
# address. Idempotent: with the venv present it returns at once.
set -euo pipefail

MOTO_VERSION="${TUNEFLOW_MOTO_VERSION:-5.1.4}"
VENV="${TUNEFLOW_MOTO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tuneflow/moto-$MOTO_VERSION}"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.tuneflow-complete"

mkdir -p "$(dirname "$VENV")"
# Tests may call this at once: one installs, the others wait.
exec 9>"$VENV.lock"
flock 9
if [ ! -f "$stamp" ]; then
    echo "tuneflow: installing moto[server]==$MOTO_VERSION into $VENV (once)" >&2
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-cache-dir "moto[server]==$MOTO_VERSION" >&2
    touch "$stamp"
fi
echo "$VENV/bin/moto_server"
