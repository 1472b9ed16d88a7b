#!/usr/bin/env bash
# Runs pipelines/image-to-voice.toml with the given tuneflow binary on
# three seeds (I2V_SEEDS overrides them; a seed already run is all cache
# hits) and prints each variant's top-1, EER and 10-fold accuracy per seed
# and as mean ± std, and each variant's gain over scratch.
# `scripts/seeds.py TUNEFLOW PIPELINE SEED...` does the same for any
# pipeline (digits.toml, demo.toml).
set -euo pipefail
bin="$1"
seeds="${I2V_SEEDS:-7 1 2}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../pipelines"
"$bin" fixtures --out fixtures
echo "--- image-to-voice.toml on seeds $seeds (tuneflow run image-to-voice.toml --set pipeline.seed=N):"
python3 "$here/seeds.py" "$bin" image-to-voice.toml $seeds
