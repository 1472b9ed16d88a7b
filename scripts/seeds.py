#!/usr/bin/env python3
"""Any pipeline's evaluations over seeds: each variant's metrics per seed,
then mean ± std, and each variant's gain over its baseline.

usage: seeds.py TUNEFLOW PIPELINE SEED [SEED ...] [-- --set KEY=VALUE ...]

Runs `TUNEFLOW run PIPELINE --set pipeline.seed=N` for each seed (a seed
already run is all cache hits, and its time is then the cache's), then
reads every `evaluate` stage back with `tuneflow metrics --json` (one line
per evaluate stage; each names its model and its baseline by their
labels) and every `pretrain` stage's last validation accuracy with
`tuneflow export`. A variant is a label: the same label in two evaluate
stages (the shared baseline) is the same embeddings, counted once per
seed. Arguments after `--` go to every `tuneflow` call (e.g. `--set
pretrain.epochs=8`: a variant of the recipe over the same seeds). Prints
Markdown tables. Exits 1 if a run fails. Standard library
only (Python 3.11: tomllib). `scripts/demo_seeds.py` is the demo's
two-variant form of the same table.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib

# The metrics reported, in this order, when an evaluation has them:
# (key, column title, scale, digits).
METRICS = [
    ("top1", "top-1", 1, 3),
    ("eer", "EER %", 100, 1),
    ("accuracy_10fold", "10-fold acc", 1, 3),
    ("auc", "AUC", 1, 3),
]
LOWER_IS_BETTER = {"eer"}


EXTRA = []


def tuneflow(binary, *args):
    return subprocess.run([binary, *args, *EXTRA], capture_output=True, text=True)


def run_seed(binary, pipeline, seed):
    t0 = time.time()
    r = tuneflow(binary, "run", pipeline, "--json", "--set", f"pipeline.seed={seed}")
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        sys.exit(f"seed {seed}: `tuneflow run` failed (exit {r.returncode})")
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    ran = sum(1 for e in events if e.get("event") == "stage-finished")
    return time.time() - t0, ran


def pretrain_stages(pipeline):
    with open(pipeline, "rb") as f:
        stages = tomllib.load(f).get("stage", {})
    return [name for name, s in stages.items() if s.get("kind") == "pretrain"]


def read_seed(binary, pipeline, seed):
    """({report: (label, baseline label, metrics)}, {pretrain stage: val acc})."""
    s = ["--set", f"pipeline.seed={seed}"]
    r = tuneflow(binary, "metrics", pipeline, "--json", *s)
    if r.returncode != 0:
        sys.exit(f"seed {seed}: `tuneflow metrics` failed: {r.stderr.strip()}")
    reports = {}
    for line in r.stdout.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        m = event["metrics"]
        columns = m["columns"]
        label, base = columns[0], columns[1] if len(columns) > 2 else None
        reports[event["report"]] = (label, base, m)
    pre = {}
    with tempfile.TemporaryDirectory() as d:
        for stage in pretrain_stages(pipeline):
            to = os.path.join(d, stage)
            r = tuneflow(binary, "export", pipeline, stage, "--to", to, *s)
            if r.returncode != 0:
                sys.exit(f"seed {seed}: `tuneflow export {stage}` failed: {r.stderr.strip()}")
            with open(os.path.join(to, "metrics.json")) as f:
                pre[stage] = json.load(f)["epochs"][-1]["val_acc"]
    return reports, pre


def mean_std(values, scale=1, digits=3):
    values = [scale * v for v in values]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def keys_of(metrics):
    return [k for k in METRICS if k[0] in metrics]


def print_per_seed(seeds, per_seed):
    """One table per evaluate stage: each seed's value of each metric."""
    for report in per_seed[0][0]:
        label, base, m0 = per_seed[0][0][report]
        keys = keys_of(m0[label])
        names = [label] + ([base] if base else [])
        print(f"\n{report}:\n")
        print("| seed | " + " | ".join(f"{n} {t}" for n in names for _, t, _, _ in keys) + " |")
        print("|---" * (1 + len(names) * len(keys)) + "|")
        for seed, (reports, _) in zip(seeds, per_seed):
            m = reports[report][2]
            cells = [f"{s * m[n][k]:.{d}f}" for n in names for k, _, s, d in keys]
            print(f"| {seed} | " + " | ".join(cells) + " |")


def print_summary(per_seed):
    """Mean ± std per variant, then each model's gain over its baseline. A
    variant is a label on one set of trials: the same label on other trials
    (digits.toml's test split and its pair file) is another row."""
    variants, gains, shown = {}, {}, {}
    for reports, _ in per_seed:
        for report, (label, base, m) in reports.items():
            trials = (m["trials"]["count"], m["trials"]["source"])
            for name in [label] + ([base] if base else []):
                key = (name, trials)
                shown.setdefault(key, report)
                if shown[key] != report:
                    continue
                for k, _, _, _ in keys_of(m[name]):
                    variants.setdefault(key, {}).setdefault(k, []).append(m[name][k])
            if base:
                for k, _, _, _ in keys_of(m[label]):
                    sign = -1 if k in LOWER_IS_BETTER else 1
                    gains.setdefault((label, base, report), {}).setdefault(k, []).append(
                        sign * (m[label][k] - m[base][k]))
    labels = [name for name, _ in variants]
    title = {key: key[0] if labels.count(key[0]) == 1 else f"{key[0]} ({shown[key]})"
             for key in variants}
    several = len({r for _, _, r in gains}) > 1 and len({(a, b) for a, b, _ in gains}) < len(gains)
    keys = [k for k in METRICS if any(k[0] in v for v in variants.values())]
    n = len(per_seed)
    print(f"\nmean ± std over {n} seeds:\n")
    print("| variant | " + " | ".join(t for _, t, _, _ in keys) + " |")
    print("|---" * (1 + len(keys)) + "|")
    for key, v in variants.items():
        cells = [mean_std(v[k], s, d) if k in v else "" for k, _, s, d in keys]
        print(f"| {title[key]} | " + " | ".join(cells) + " |")
    if gains:
        print("\ngain over the baseline (EER in points, lower EER counts as a gain), "
              "mean ± std and seeds won:\n")
        print("| variant vs baseline | " + " | ".join(t for _, t, _, _ in keys) + " |")
        print("|---" * (1 + len(keys)) + "|")
        for (label, base, report), g in gains.items():
            cells = [f"{mean_std(g[k], s, d)} ({sum(1 for x in g[k] if x > 0)}/{n})"
                     if k in g else "" for k, _, s, d in keys]
            where = f" ({report})" if several else ""
            print(f"| {label} vs {base}{where} | " + " | ".join(cells) + " |")


def cli(argv, doc, hint=""):
    """`TUNEFLOW PIPELINE SEED...` from `argv` (without the program name):
    (binary, pipeline, seeds); exits with `doc` or a clear error."""
    if len(argv) < 3:
        sys.exit(doc)
    try:
        seeds = [int(s) for s in argv[2:]]
    except ValueError:
        sys.exit(f"seeds must be integers{hint}, got: {' '.join(argv[2:])}")
    return argv[0], argv[1], seeds


def main():
    argv = sys.argv[1:]
    if "--" in argv:
        EXTRA.extend(argv[argv.index("--") + 1:])
        argv = argv[:argv.index("--")]
    binary, pipeline, seeds = cli(argv, __doc__)
    per_seed = []
    for seed in seeds:
        secs, ran = run_seed(binary, pipeline, seed)
        reports, pre = read_seed(binary, pipeline, seed)
        per_seed.append((reports, pre))
        print(f"seed {seed}: {ran} stages ran in {secs:.0f} s; pretraining val acc: "
              + ", ".join(f"{k} {v:.3f}" for k, v in pre.items()), flush=True)
    for stage in per_seed[0][1]:
        print(f"{stage} val acc: {mean_std([p[stage] for _, p in per_seed])}")
    print_per_seed(seeds, per_seed)
    print_summary(per_seed)


if __name__ == "__main__":
    main()
