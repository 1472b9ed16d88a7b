#!/usr/bin/env bash
# Training and inference throughput: tuneflow's worker against the same
# ResNet in a PyTorch script, alternated, same libtorch and thread count.
# Usage: scripts/bench-train.sh WORKER [--rounds N] [--threads T] [--device cuda]
set -euo pipefail
worker="$1"
python="$(cd "$LIBTORCH/../../../.." && pwd)/bin/python3"
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(uname -sr)"
echo "torch: $("$python" -c 'import torch; print(torch.__version__)')"
python3 "$(dirname "$0")/bench_train.py" "$worker" "$python" "${@:2}"
