#!/usr/bin/env bash
# Runs the runner benchmarks (BENCHMARKS.md). DVC and Snakemake are installed
# from PyPI into a throwaway venv outside the clone, once.
set -euo pipefail
bin="$1"
venv="${TUNEFLOW_BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tuneflow/bench-venv}"
if [ ! -x "$venv/bin/dvc" ] || [ ! -x "$venv/bin/snakemake" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q dvc snakemake
fi
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"
echo "versions: $("$bin" --version), dvc $("$venv/bin/dvc" --version), snakemake $("$venv/bin/snakemake" --version)"
python3 "$(dirname "$0")/bench_runner.py" "$bin" --alternatives "$venv" "${@:2}"
