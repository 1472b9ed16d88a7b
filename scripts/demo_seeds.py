#!/usr/bin/env python3
"""The demo's comparison over seeds: transferred vs scratch, each seed and
mean +- std.

usage: demo_seeds.py TUNEFLOW PIPELINE SEED [SEED ...]

Runs `TUNEFLOW run PIPELINE --set pipeline.seed=N` for each seed (a seed
already run is all cache hits), then reads each seed's result back from the
cache: `tuneflow metrics --set pipeline.seed=N --json` for the evaluation and
`tuneflow export ... pretrain` for the pretraining curve. Prints a Markdown
table. Exits 1 if a run fails; the verdict line says on how many seeds
transfer wins in both top-1 and EER. Standard library only.
"""
import json
import os
import sys
import tempfile

from seeds import cli, mean_std, run_seed, tuneflow


def read_seed(binary, pipeline, seed):
    s = ["--set", f"pipeline.seed={seed}"]
    r = tuneflow(binary, "metrics", pipeline, "--json", *s)
    if r.returncode != 0:
        sys.exit(f"seed {seed}: `tuneflow metrics` failed: {r.stderr.strip()}")
    report = json.loads(r.stdout.splitlines()[0])["metrics"]
    with tempfile.TemporaryDirectory() as d:
        to = os.path.join(d, "pretrain")
        r = tuneflow(binary, "export", pipeline, "pretrain", "--to", to, *s)
        if r.returncode != 0:
            sys.exit(f"seed {seed}: `tuneflow export` failed: {r.stderr.strip()}")
        with open(os.path.join(to, "metrics.json")) as f:
            curve = [e["val_acc"] for e in json.load(f)["epochs"]]
    return report, curve


def main():
    binary, pipeline, seeds = cli(sys.argv[1:], __doc__, ' (DEMO_SEEDS)')
    rows = []
    for seed in seeds:
        secs, ran = run_seed(binary, pipeline, seed)
        report, curve = read_seed(binary, pipeline, seed)
        t, s = report["transferred"], report["scratch"]
        rows.append((seed, curve[-1], t["top1"], t["eer"], s["top1"], s["eer"]))
        print(f"seed {seed}: {ran} stages ran in {secs:.0f} s; pretrain val acc by epoch: "
              + " ".join(f"{a:.2f}" for a in curve), flush=True)
    print()
    print("| seed | pretrain val acc | transferred top-1 | transferred EER "
          "| scratch top-1 | scratch EER | top-1 gain | EER gain (points) |")
    print("|---|---|---|---|---|---|---|---|")
    for seed, pre, t1, te, s1, se in rows:
        print(f"| {seed} | {pre:.3f} | {t1:.3f} | {100 * te:.1f} % | {s1:.3f} | "
              f"{100 * se:.1f} % | {t1 - s1:+.3f} | {100 * (se - te):+.1f} |")
    col = lambda i: [r[i] for r in rows]
    gains = [r[2] - r[4] for r in rows]
    eer_gains = [100 * (r[5] - r[3]) for r in rows]
    print(f"| mean ± std | {mean_std(col(1))} | {mean_std(col(2))} | "
          f"{mean_std([100 * x for x in col(3)], digits=1)} % | {mean_std(col(4))} | "
          f"{mean_std([100 * x for x in col(5)], digits=1)} % | {mean_std(gains)} | "
          f"{mean_std(eer_gains, digits=1)} |")
    wins = sum(1 for r in rows if r[2] > r[4] and r[3] < r[5])
    print(f"\ntransfer beats scratch in top-1 and EER on {wins} of {len(rows)} seeds; "
          f"pretraining validation accuracy {min(col(1)):.2f}-{max(col(1)):.2f}")


if __name__ == "__main__":
    main()
