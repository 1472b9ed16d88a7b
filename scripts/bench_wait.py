"""Data-loader wait as a share of training time (BENCHMARKS.md): runs real
`pretrain` stages on the fixtures and reports the `data_wait_share` the
worker measures per epoch (time blocked on the loader / epoch time).
Usage: bench_wait.py TUNEFLOW FIXTURES_DIR
"""
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PIPELINE = """
[pipeline]
seed = 1
device = "cpu"

[stage.digits]
kind = "ingest"
format = "insightface-rec"
path = "{fx}/digits/rec-0-4"
size = 28
channels = 1

[stage.digits_aug]
kind = "augment"
data = "digits.train"
ops = [{{ op = "random-crop", padding = 2 }}, {{ op = "rotate", degrees = 10 }}, {{ op = "normalize", mean = 0.13, std = 0.31 }}]

[stage.digits_train]
kind = "pretrain"
data = "digits_aug"
model = {{ depth = 10, width = 16, embedding = 64 }}
optimizer = {{ kind = "sgd", lr = 0.05, momentum = 0.9 }}
epochs = 3
batch = 64

[stage.speakers]
kind = "ingest"
format = "voxceleb"
path = "{fx}/speakers/pretrain"
features = {{ kind = "fbank", bins = 40 }}

[stage.speakers_aug]
kind = "augment"
data = "speakers.train"
ops = [{{ op = "segment-crop", frames = 100 }}, {{ op = "spec-augment", freq = 8, time = 10 }}]

[stage.speakers_train]
kind = "pretrain"
data = "speakers_aug"
model = {{ depth = 10, width = 16, embedding = 64 }}
optimizer = {{ kind = "sgd", lr = 0.05, momentum = 0.9 }}
epochs = 3
batch = 32
"""


def main():
    tuneflow, fx = sys.argv[1], Path(sys.argv[2]).resolve()
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "p.toml"
        p.write_text(PIPELINE.format(fx=fx))
        out = subprocess.run([tuneflow, "run", "--json", "--jobs", "1", str(p)], check=True, capture_output=True, text=True).stdout
    epochs = [json.loads(l) for l in out.splitlines() if '"epoch"' in l]
    print("| stage | data | samples/s (median epoch) | loader wait share (median epoch) |")
    print("|---|---|---|---|")
    for stage, what in [("digits_train", "MNIST 0-4, 1x28x28, crop+rotate+normalise, batch 64"), ("speakers_train", "espeak fbank 40 bins, 100-frame crops + SpecAugment, batch 32")]:
        ep = [e for e in epochs if e["stage"] == stage and e["event"] == "epoch"]
        sps = statistics.median(e["samples_per_s"] for e in ep)
        wait = statistics.median(e["data_wait_share"] for e in ep)
        print(f"| {stage} | {what} | {sps:.0f} | {100 * wait:.2f} % |")


if __name__ == "__main__":
    main()
