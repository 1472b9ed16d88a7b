#!/usr/bin/env bash
# Runs pipelines/demo.toml with the given tuneflow binary, twice: the second
# run is all cache hits.
set -euo pipefail
bin="$1"
cd "$(dirname "$0")/../pipelines"
"$bin" fixtures --out fixtures --no-digits
"$bin" run demo.toml
echo "--- metrics:"
cat out/metrics.json
echo "--- second run (all cached):"
"$bin" run demo.toml
"$bin" status demo.toml
