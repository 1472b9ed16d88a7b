#!/usr/bin/env bash
# Runs pipelines/demo.toml with the given tuneflow binary: the file's own
# seed with the full display, then the comparison over five seeds
# (DEMO_SEEDS overrides them; a seed already run is all cache hits), then a
# second run that is all cache hits.
set -euo pipefail
bin="$1"
seeds="${DEMO_SEEDS:-7 1 2 3 4}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../pipelines"
"$bin" fixtures --out fixtures --no-digits
"$bin" run demo.toml
echo "--- transferred vs scratch (tuneflow metrics demo.toml):"
"$bin" metrics demo.toml
echo "--- plots: tuneflow export demo.toml evaluate.plots --to DIR (roc.png, det.png, training.png)"
echo "--- the same comparison on seeds $seeds (tuneflow run demo.toml --set pipeline.seed=N):"
python3 "$here/demo_seeds.py" "$bin" demo.toml $seeds
echo "--- second run (all cached):"
"$bin" run demo.toml
