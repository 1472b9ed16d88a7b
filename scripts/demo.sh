#!/usr/bin/env bash
# Runs pipelines/demo.toml with the given tuneflow binary, twice: the second
# run is all cache hits.
set -euo pipefail
bin="$1"
cd "$(dirname "$0")/../pipelines"
"$bin" fixtures --out fixtures --no-digits
"$bin" run demo.toml
echo "--- transferred vs scratch (tuneflow metrics demo.toml):"
"$bin" metrics demo.toml
echo "--- plots: tuneflow export demo.toml evaluate.plots --to DIR (roc.png, det.png, training.png)"
echo "--- second run (all cached):"
"$bin" run demo.toml
