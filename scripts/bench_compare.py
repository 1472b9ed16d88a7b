#!/usr/bin/env python3
"""Two tuneflow binaries side by side on the runner benchmarks.

Usage: bench_compare.py OLD_BIN NEW_BIN [--reps N]

Builds each pipeline of bench_runner.py once per binary (each in its own
folder: cache formats may differ), then times no-op reruns and `status`
alternating old and new, so load on the machine hits both alike. Prints
a Markdown table of medians; nothing is asserted.
"""
import argparse
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench_runner import generated, seven_stages, setup, timed  # noqa: E402


def alternate(cmds, reps):
    """cmds: name -> (argv, cwd). Returns name -> median seconds."""
    samples = {k: [] for k in cmds}
    for _ in range(reps):
        for k, (argv, cwd) in cmds.items():
            samples[k].append(timed(argv, cwd))
    return {k: statistics.median(v) for k, v in samples.items()}


def case(bins, stages, reps, status=True):
    dirs = {}
    for name, b in bins.items():
        d = setup("tuneflow", stages, None)
        timed([b, "run", "pipeline.toml"], d)
        dirs[name] = d
    time.sleep(0.2)
    runs = alternate({n: ([b, "run", "pipeline.toml"], dirs[n]) for n, b in bins.items()}, reps)
    st = alternate({n: ([b, "status", "pipeline.toml"], dirs[n]) for n, b in bins.items()}, reps) if status else None
    for d in dirs.values():
        shutil.rmtree(d)
    return runs, st


def fmt(x):
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="skip the 10,000-stage cases")
    args = ap.parse_args()
    bins = {"old": args.old, "new": args.new}
    print("| pipeline | no-op run, old | no-op run, new | status, old | status, new |")
    print("|---|---|---|---|---|")
    cases = [("7 stages", seven_stages(0.1))]
    for n in (1000,) + (() if args.quick else (10000,)):
        for shape in ("chain", "fan-out"):
            cases.append((f"{n} stages, {shape}", generated(n, shape)))
    for label, stages in cases:
        runs, st = case(bins, stages, args.reps)
        print(f"| {label} | {fmt(runs['old'])} | {fmt(runs['new'])} | {fmt(st['old'])} | {fmt(st['new'])} |", flush=True)


if __name__ == "__main__":
    main()
