"""Alternates `tuneflow-torch bench` and `bench_torch.py` (the same ResNet
in PyTorch, on the same torch 2.11 libraries and thread count) and prints a
Markdown table of medians, ratios and the share of fp32 matmul peak that
tuneflow's training step reaches. Usage:
    bench_train.py WORKER VENV_PYTHON [--rounds N] [--threads T] [--device D]
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


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("worker")
    ap.add_argument("python")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_torch.py")
    print(f"| config | tuneflow train/s | PyTorch train/s | ratio | tuneflow infer/s | PyTorch infer/s | ratio | share of fp32 matmul peak |")
    print("|---|---|---|---|---|---|---|---|")
    for name, spec in CONFIGS:
        spec = dict(spec, threads=args.threads, device=args.device)
        text = json.dumps(spec)
        flops = run([args.python, script, text, "--flops"])
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(run([args.worker, "bench", text]))
            theirs.append(run([args.python, script, text]))
        med = lambda rows, k: statistics.median(r[k] for r in rows)
        tt, pt = med(ours, "train_samples_per_s"), med(theirs, "train_samples_per_s")
        ti, pi = med(ours, "infer_samples_per_s"), med(theirs, "infer_samples_per_s")
        peak = tt * flops["train_flops_per_sample"] / flops["matmul_peak_flops"]
        print(f"| {name} | {tt:.0f} | {pt:.0f} | {tt / pt:.2f} | {ti:.0f} | {pi:.0f} | {ti / pi:.2f} | {100 * peak:.0f} % "
              f"({flops['train_flops_per_sample'] / 1e6:.0f} MFLOP/sample, peak {flops['matmul_peak_flops'] / 1e9:.0f} GFLOP/s) |")


if __name__ == "__main__":
    main()
