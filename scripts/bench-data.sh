#!/usr/bin/env bash
# Data benchmarks (BENCHMARKS.md): ingest throughput against Python
# (PIL, kaldi-native-fbank) on the same fixtures and core count, the loader
# with augmentation, and the re-check of an unchanged 100k/150k-file tree.
set -euo pipefail
bin="$1"
here="$(cd "$(dirname "$0")" && pwd)"
venv="${TUNEFLOW_BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tuneflow/bench-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import kaldi_native_fbank, PIL, numpy' 2>/dev/null ||
    "$venv/bin/pip" install -q pillow numpy kaldi-native-fbank
fx="${XDG_CACHE_HOME:-$HOME/.cache}/tuneflow/bench-fixtures"
t0=$(date +%s.%N)
"$bin" fixtures --out "$fx" --digits-per-class 1000
echo "fixtures: $(echo "$(date +%s.%N) - $t0" | bc) s (0 when already built)"
echo "machine: $(nproc) cores, $(uname -sr)"
cargo run --release --locked --quiet --example data_bench -- "$fx"
"$venv/bin/python" "$here/bench_data.py" "$fx" "$(nproc)"
for n in 100000 150000; do
    python3 -c "
import sys; sys.path.insert(0, '$here')
import bench_runner as b
first, recheck, noop = b.bench_tree('$bin', $n)
print(f'tree of {$n} files: first run {b.fmt(first)}, unchanged re-check (status) {b.fmt(recheck)}, no-op run {b.fmt(noop)}')"
done
