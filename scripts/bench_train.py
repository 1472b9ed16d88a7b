"""Alternates `tuneflow-torch bench` and `bench_torch.py` (the same ResNet
in PyTorch, on the same torch 2.11 libraries and thread count) and prints a
Markdown table of medians, ratios and the share of fp32 matmul peak that
tuneflow's training step reaches. Usage:
    bench_train.py WORKER VENV_PYTHON [--rounds N] [--threads T] [--device D]
        [--precision fp32|bf16] [--layout L] [--optimizer flat|per-tensor]
        [--torch-optimizer foreach|fused|single] [--neutrality [--baseline OLD_WORKER]]
        [--long] [--quick]
--precision and --layout go to both sides, --optimizer to tuneflow's
worker, --torch-optimizer to bench_torch.py (each only when given).
--neutrality compares tuneflow with itself instead: per-tensor SGD, flat
SGD, and flat SGD with channels-last, all contiguous-input fp32 otherwise,
alternated, to check the new layout and optimizer cost nothing on CPU;
--baseline adds an older worker binary with its own defaults as a first
column (e.g. main's build), and the order of the variants rotates every
round so no variant always runs first.
--long runs 4x the steps (single runs of the short defaults vary by
10-15 % on a shared 2-core machine). --quick cuts the steps to test the
script itself (not a measurement).
"""
import argparse
import json
import os
import statistics
import subprocess

CONFIGS = [
    ("digits: ResNet-10 w16, 1x28x28, batch 64", {"depth": 10, "width": 16, "input": [1, 28, 28], "classes": 10, "batch": 64, "steps": 30}),
    ("faces (small): ResNet-18 w32, 3x64x64, batch 32", {"depth": 18, "width": 32, "input": [3, 64, 64], "classes": 100, "batch": 32, "steps": 6}),
    ("spectrogram: ResNet-10 w16, 1x40x200, batch 32", {"depth": 10, "width": 16, "input": [1, 40, 200], "classes": 24, "batch": 32, "steps": 10}),
]

NEUTRALITY = [
    ("contiguous, per-tensor SGD (old path)", {"layout": "contiguous", "optimizer": "per-tensor"}),
    ("contiguous, flat SGD", {"layout": "contiguous", "optimizer": "flat"}),
    ("channels-last, flat SGD", {"layout": "channels-last", "optimizer": "flat"}),
]


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def med(rows, k):
    return statistics.median(r[k] for r in rows)


def neutrality(args, configs):
    variants = ([("baseline (--baseline worker, its defaults)", {}, args.baseline)] if args.baseline else []) + \
        [(v, keys, args.worker) for v, keys in NEUTRALITY]
    print("| config | tuneflow variant | ran as (layout/optimizer) | train/s | vs per-tensor | optimizer share | infer/s |")
    print("|---|---|---|---|---|---|---|")
    for name, spec in configs:
        runs = {v: [] for v, _, _ in variants}
        for r in range(args.rounds):
            k = r % len(variants)
            for v, keys, worker in variants[k:] + variants[:k]:
                runs[v].append(run([worker, "bench", json.dumps(dict(spec, **keys))]))
        base = med(runs[NEUTRALITY[0][0]], "train_samples_per_s")
        for v, _, _ in variants:
            rows = runs[v]
            echoed = f"{rows[0].get('layout', '?')}/{rows[0].get('optimizer', '?')}"
            tt = med(rows, "train_samples_per_s")
            print(f"| {name} | {v} | {echoed} | {tt:.0f} | {tt / base:.2f} | {100 * med(rows, 'optimizer_share'):.2f} % | "
                  f"{med(rows, 'infer_samples_per_s'):.0f} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("worker")
    ap.add_argument("python")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision")
    ap.add_argument("--layout")
    ap.add_argument("--optimizer", help="tuneflow's: flat or per-tensor")
    ap.add_argument("--torch-optimizer", help="PyTorch's: foreach, fused or single")
    ap.add_argument("--neutrality", action="store_true")
    ap.add_argument("--baseline", help="with --neutrality: an older tuneflow-torch to compare with")
    ap.add_argument("--long", action="store_true", help="4x the steps")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    both = {k: v for k, v in (("precision", args.precision), ("layout", args.layout)) if v}
    steps = lambda spec: 2 if args.quick else spec["steps"] * (4 if args.long else 1)
    configs = [(name, dict(spec, threads=args.threads, device=args.device, **both, steps=steps(spec)))
               for name, spec in CONFIGS]
    if args.neutrality:
        return neutrality(args, configs)
    ours_keys = {"optimizer": args.optimizer} if args.optimizer else {}
    theirs_keys = {"optimizer": args.torch_optimizer} if args.torch_optimizer else {}
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_torch.py")
    print(f"| config | tuneflow train/s | PyTorch train/s | ratio | tuneflow infer/s | PyTorch infer/s | ratio | share of fp32 matmul peak |")
    print("|---|---|---|---|---|---|---|---|")
    for name, spec in configs:
        ours_text, theirs_text = json.dumps(dict(spec, **ours_keys)), json.dumps(dict(spec, **theirs_keys))
        flops = run([args.python, script, theirs_text, "--flops"])
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(run([args.worker, "bench", ours_text]))
            theirs.append(run([args.python, script, theirs_text]))
        tt, pt = med(ours, "train_samples_per_s"), med(theirs, "train_samples_per_s")
        ti, pi = med(ours, "infer_samples_per_s"), med(theirs, "infer_samples_per_s")
        peak = tt * flops["train_flops_per_sample"] / flops["matmul_peak_flops"]
        print(f"| {name} | {tt:.0f} | {pt:.0f} | {tt / pt:.2f} | {ti:.0f} | {pi:.0f} | {ti / pi:.2f} | {100 * peak:.0f} % "
              f"({flops['train_flops_per_sample'] / 1e6:.0f} MFLOP/sample, peak {flops['matmul_peak_flops'] / 1e9:.0f} GFLOP/s) |")


if __name__ == "__main__":
    main()
