#!/usr/bin/env python3
"""The association demo over seeds: the true pairing against the shuffled
control, each seed and mean +- std.

usage: associate_seeds.py TUNEFLOW PIPELINE SEED [SEED ...]

Runs `TUNEFLOW run PIPELINE --set pipeline.seed=N` for each seed (a seed
already run is all cache hits), reads both `associate` stages' measures
back with `tuneflow metrics --json`, and prints a Markdown table of 1:2
matching (mean of voice->face and face->voice; chance 0.5), cross-modal
EER and top-1 among the candidates. Exits 1 if a run fails. Standard
library only.
"""
import json
import statistics
import sys
import time

from seeds import cli, mean_std, tuneflow

STAGES = [("associate", "real pairing"), ("control", "shuffled control")]


def measures(binary, pipeline, seed):
    t0 = time.time()
    s = ["--set", f"pipeline.seed={seed}"]
    r = tuneflow(binary, "run", pipeline, *s)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        sys.exit(f"seed {seed}: `tuneflow run` failed (exit {r.returncode})")
    secs = time.time() - t0
    r = tuneflow(binary, "metrics", pipeline, "--json", *s)
    if r.returncode != 0:
        sys.exit(f"seed {seed}: `tuneflow metrics` failed: {r.stderr.strip()}")
    out = {}
    for line in r.stdout.splitlines():
        v = json.loads(line)
        out[v["stage"]] = v["metrics"]["unseen"]
    return secs, out


def row(m):
    match = (m["voice2face_match"] + m["face2voice_match"]) / 2
    return match, m["cross_eer"], (m["voice2face_top1"] + m["face2voice_top1"]) / 2


def main():
    binary, pipeline, seeds = cli(sys.argv[1:], __doc__)
    rows = {stage: [] for stage, _ in STAGES}
    for seed in seeds:
        secs, out = measures(binary, pipeline, seed)
        print(f"seed {seed}: {secs:.0f} s", flush=True)
        for stage, _ in STAGES:
            rows[stage].append(row(out[stage]))
    print()
    print("| seed | " + " | ".join(
        f"{label}: 1:2 match / EER / top-1" for _, label in STAGES) + " |")
    print("|---|---|---|")
    for i, seed in enumerate(seeds):
        cells = []
        for stage, _ in STAGES:
            m, e, t = rows[stage][i]
            cells.append(f"{m:.3f} / {100 * e:.1f} % / {t:.3f}")
        print(f"| {seed} | " + " | ".join(cells) + " |")
    cells = []
    for stage, _ in STAGES:
        col = list(zip(*rows[stage]))
        cells.append(f"{mean_std(col[0])} / {mean_std(col[1], 100, 1)} % / {mean_std(col[2])}")
    print(f"| mean ± std, {len(seeds)} seeds | " + " | ".join(cells) + " |")
    gains = [r[0] - c[0] for r, c in zip(rows["associate"], rows["control"])]
    print(f"\n1:2 matching, real minus control: smallest {min(gains):+.3f}, "
          f"mean {statistics.mean(gains):+.3f} (chance 0.5; candidates for top-1: see the pipeline)")


if __name__ == "__main__":
    main()
