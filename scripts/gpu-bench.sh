#!/usr/bin/env bash
# The one GPU benchmark of issue #14 (scripts/bench_gpu.py): tuneflow vs
# PyTorch's best practice on four ResNets, then the real `pretrain` stage.
# Usage: scripts/gpu-bench.sh [BIN_DIR] [bench_gpu.py options]
#   BIN_DIR (or TUNEFLOW_BIN): the folder holding the stripped `tuneflow`
#   and `tuneflow-torch` binaries. PYTHON: the Python with torch (python3).
#   Results: --out DIR, default $OUT (so they come back from the GPU
#   machine), else ./gpu-bench-out.
# On the H200 machine (docs: /work/shared/reference/gpu.md) the binaries
# need that Python's torch libraries on LD_LIBRARY_PATH; this adds them
# unless already there. Where the binaries carry an rpath to the same
# libraries (a local build) that is harmless.
# For the H200: `make gpu-bin` here (stripped release binaries in gpu-bin/,
# which is git-ignored, so carry it), and run `scripts/gpu-bench.sh gpu-bin`
# there
# (expected: about 5-7 minutes; split it with --only NAMES / --skip-pretrain
# if a command's time limit is near). --extra-rows adds the issue's
# intermediate PyTorch columns (bf16; bf16 + channels_last).
# CPU test: PYTHON=~/.cache/tuneflow/torch-2.11.0/bin/python3 \
#   scripts/gpu-bench.sh ~/.cache/tuneflow/target/release --device cpu --quick
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${TUNEFLOW_BIN:-}"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    bin="$1"
    shift
fi
if [ -z "$bin" ]; then
    echo "gpu-bench.sh: give the folder holding tuneflow and tuneflow-torch (first argument or TUNEFLOW_BIN)" >&2
    exit 2
fi
if [ ! -d "$bin" ]; then
    echo "gpu-bench.sh: binary folder $bin does not exist" >&2
    exit 2
fi
python="${PYTHON:-python3}"
if ! torch_dir="$("$python" -c 'import torch, os; print(os.path.dirname(torch.__file__))' 2>/dev/null)"; then
    echo "gpu-bench.sh: $python cannot import torch; set PYTHON to a Python with torch 2.11" >&2
    exit 2
fi
tl="$torch_dir/lib"
case ":${LD_LIBRARY_PATH:-}:" in
    *":$tl:"*) ;;
    *)
        path="$tl"
        for d in "$tl"/../../nvidia/*/lib; do
            if [ -d "$d" ]; then path="$path:$d"; fi
        done
        export LD_LIBRARY_PATH="$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        ;;
esac
exec "$python" "$here/bench_gpu.py" --bin "$bin" --python "$python" "$@"
