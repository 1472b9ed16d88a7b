#!/usr/bin/env bash
# Runs pipelines/associate.toml with the given tuneflow binary: the paired
# fixtures, the file's own seed with the full display, then the real
# pairing against the shuffled control over seeds (ASSOC_SEEDS overrides
# them; a seed already run is all cache hits).
set -euo pipefail
bin="$1"
seeds="${ASSOC_SEEDS:-1 2 3 4 5}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../pipelines"
"$bin" fixtures --out fixtures --no-speakers --no-digits
"$bin" run associate.toml
echo "--- real pairing and shuffled control (tuneflow metrics associate.toml):"
"$bin" metrics associate.toml
echo "--- plots: tuneflow export associate.toml associate.plots --to DIR (roc.png, det.png, training.png)"
echo "--- over seeds $seeds (tuneflow run associate.toml --set pipeline.seed=N):"
python3 "$here/associate_seeds.py" "$bin" associate.toml $seeds
