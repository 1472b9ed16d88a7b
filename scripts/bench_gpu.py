"""The GPU training benchmark (issue #14), one script: tuneflow against the
best PyTorch practice on the same ResNets, then tuneflow's real `pretrain`
stage against its raw step rate. Prints Markdown tables for BENCHMARKS.md
and writes them with the raw JSON rows to OUT (gpu-bench.md, .json; each
run's row is appended to gpu-bench-rows.jsonl as it finishes).

Part 1 alternates `tuneflow-torch bench SPEC` with `bench_torch.py SPEC`
(same network, same libtorch), medians of --rounds, for four configs; rows
tuneflow fp32 (contiguous, per-tensor SGD: the old path), tuneflow bf16 +
channels-last + flat SGD (the new path), PyTorch fp32, and PyTorch bf16 +
channels_last + fused SGD (its best). Part 2 is bench_gpu_pretrain.py.

Usage: bench_gpu.py --bin DIR [--python PY] [--device cuda|cpu] [--quick]
                    [--rounds N] [--out DIR] [--work DIR] [--only NAMES]
                    [--skip-pretrain] [--extra-rows]
--quick shrinks everything (tiny widths/inputs/steps, 1 round) so the whole
script runs in about a minute on 2 CPU cores: that is how CI tests it.
Use scripts/gpu-bench.sh, which also sets LD_LIBRARY_PATH for the binaries.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOMINAL_BF16_PEAK = 790e12  # H200 dense bf16, the datasheet's figure

# (kind, full-size spec, what --quick changes)
CONFIGS = [
    # (R50's loss on its batch needs about 6 steps to fall at --quick size.)
    ("face", dict(depth=50, width=64, input=[3, 112, 112], classes=1000, batch=128, steps=12),
     dict(width=8, input=[3, 16, 16], batch=8, steps=6)),
    ("face", dict(depth=18, width=64, input=[3, 112, 112], classes=1000, batch=256, steps=10),
     dict(width=8, input=[3, 16, 16], batch=8, steps=2)),
    ("speaker", dict(depth=34, width=32, input=[1, 80, 200], classes=1000, batch=128, steps=15),
     dict(width=8, input=[1, 16, 32], batch=8, steps=2)),
    ("digits", dict(depth=10, width=16, input=[1, 28, 28], classes=10, batch=64, steps=150),
     dict(width=8, batch=16, steps=2)),
]

# (column, impl, spec keys): tuneflow's old and new paths, PyTorch's plain
# and best; --extra-rows adds the intermediate PyTorch columns.
TF_BEST, PT_BEST = "tuneflow bf16 + channels-last + flat SGD", "PyTorch bf16 + channels_last + fused SGD"
ROWS = [
    ("tuneflow fp32", "tuneflow", dict(precision="fp32", layout="contiguous", optimizer="per-tensor")),
    (TF_BEST, "tuneflow", dict(precision="bf16", layout="channels-last", optimizer="flat")),
    ("PyTorch fp32", "pytorch", dict(precision="fp32", layout="contiguous")),
    (PT_BEST, "pytorch", dict(precision="bf16", layout="channels-last", optimizer="fused")),
]
EXTRA_ROWS = [
    ("PyTorch bf16", "pytorch", dict(precision="bf16", layout="contiguous")),
    ("PyTorch bf16 + channels_last", "pytorch", dict(precision="bf16", layout="channels-last")),
]


def config_name(kind, spec):
    c, h, w = spec["input"]
    return f"{kind} R{spec['depth']} w{spec['width']} {c}×{h}×{w} b{spec['batch']}"


def run_json(cmd, env=None, timeout=900):
    """Runs `cmd`, returns the JSON on its last stdout line; fails naming it."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except FileNotFoundError as e:
        raise SystemExit(f"bench_gpu.py: cannot run {cmd[0]}: {e}") from None
    except subprocess.TimeoutExpired:
        raise SystemExit(f"bench_gpu.py: {' '.join(cmd)} took over {timeout} s") from None
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        raise SystemExit(f"bench_gpu.py: {' '.join(cmd)} exited with {p.returncode}:\n{p.stderr[-3000:]}")
    return json.loads(lines[-1])


def binaries(folder):
    """The folder's `tuneflow` and `tuneflow-torch`, checked."""
    d = Path(folder)
    if not d.is_dir():
        raise SystemExit(f"bench_gpu.py: the binary folder {d} does not exist (give the folder holding tuneflow and tuneflow-torch)")
    found = []
    for name in ("tuneflow", "tuneflow-torch"):
        f = d / name
        if not (f.is_file() and os.access(f, os.X_OK)):
            raise SystemExit(f"bench_gpu.py: {f} is missing or not executable (the binary folder must hold tuneflow and tuneflow-torch)")
        found.append(str(f.resolve()))
    return found


def ran_as(row):
    """What the output says ran: precision/layout/optimizer, or a warning."""
    keys = [row.get(k) for k in ("precision", "layout", "optimizer")]
    if None in keys:
        return "not echoed (old binary?)"
    return "/".join(keys)


def loss_change(row):
    """tuneflow's loss before and after the timed steps, flagged unless it fell."""
    a, b = row.get("loss_start"), row.get("loss_end")
    if a is None or b is None:
        return "–"
    return f"{a:.3f} → {b:.3f}" + ("" if b < a else " (DID NOT FALL)")


def flops_str(x):
    return f"{x / 1e12:,.1f} TFLOP/s" if x >= 1e12 else f"{x / 1e9:,.0f} GFLOP/s"


def fmt(x, digits=0):
    return "–" if x is None else f"{x:,.{digits}f}"


def bench_part(args, worker, specs):
    """Part 1: the alternated runs. Returns (records, markdown lines)."""
    script = str(HERE / "bench_torch.py")
    records = []
    for name, spec in specs:
        runs = {col: [] for col, _, _ in args.rows}
        for r in range(args.rounds):
            for col, impl, keys in args.rows:
                flops = col == PT_BEST and r == 0
                # --quick measures the peak on a small matmul, to save time.
                s = json.dumps(dict(spec, **keys, **({"peak_size": 512} if flops and args.quick else {})))
                cmd = [worker, "bench", s] if impl == "tuneflow" else [args.python, script, s, *(["--flops"] if flops else [])]
                out = run_json(cmd)
                out["requested"] = keys
                runs[col].append(out)
                with open(Path(args.out) / "gpu-bench-rows.jsonl", "a") as f:  # kept if the run is cut short
                    f.write(json.dumps(dict(out, config=name, row=col, round=r + 1)) + "\n")
                print(f"  {name} round {r + 1}/{args.rounds} {col}: {out['train_samples_per_s']:.0f} train/s", file=sys.stderr)
        records.append({"config": name, "spec": spec, "runs": runs})
    med = lambda rows, k: statistics.median(x[k] for x in rows) if rows and all(k in x for x in rows) else None
    lines = [f"### Training samples/s (medians of {args.rounds}, alternated)", "",
             "| config | " + " | ".join(col for col, _, _ in args.rows) + " | tuneflow best / PyTorch best |",
             "|---|" + "---|" * (len(args.rows) + 1)]
    for rec in records:
        m = [med(rec["runs"][col], "train_samples_per_s") for col, _, _ in args.rows]
        rec["median_train"] = dict(zip((col for col, _, _ in args.rows), m))
        rec["ratio"] = rec["median_train"][TF_BEST] / rec["median_train"][PT_BEST]
        flag = "" if rec["ratio"] >= 1.0 else " (below 1.0)"
        lines.append(f"| {rec['config']} | " + " | ".join(fmt(v) for v in m) + f" | {rec['ratio']:.2f}{flag} |")
    lines += ["", "### Details (medians): what ran, inference, optimizer share, parameters", "",
              "The forward dtype is what tuneflow's backbone returns under its precision setting (bf16 autocast runs on CUDA "
              "only, so on CPU it stays Float); the loss is tuneflow's on the benchmark batch before and after the timed "
              "steps (it must fall: the steps learn).", "",
              "| config | row | ran as (precision/layout/optimizer) | train/s | infer/s | optimizer share | params | forward dtype | loss before → after |",
              "|---|---|---|---|---|---|---|---|---|"]
    for rec in records:
        for col, _, _ in args.rows:
            rows = rec["runs"][col]
            share = med(rows, "optimizer_share")
            note = rows[0].get("optimizer_note")
            lines.append(f"| {rec['config']} | {col} | {ran_as(rows[0])}{' (' + note + ')' if note else ''} | "
                         f"{fmt(med(rows, 'train_samples_per_s'))} | {fmt(med(rows, 'infer_samples_per_s'))} | "
                         f"{'–' if share is None else f'{100 * share:.1f} %'} | {rows[0].get('params', '–'):,} | "
                         f"{rows[0].get('forward_kind', '–')} | {loss_change(rows[0])} |")
    params = {rec["config"]: {r[0].get("params") for r in rec["runs"].values()} for rec in records}
    bad = [k for k, v in params.items() if len(v) != 1]
    lines += ["", "Parameter counts " + ("agree on every row." if not bad else f"DIFFER for {', '.join(bad)}.")]
    lines += ["", "### Share of the matmul peak (FLOPs per sample counted by torch.utils.flop_counter, one training step)", "",
              "| config | GFLOP/sample | tuneflow best train/s | FLOP rate | share of measured peak | share of nominal 790 TFLOP/s bf16 |",
              "|---|---|---|---|---|---|"]
    for rec in records:
        f = rec["runs"][PT_BEST][0]
        rate = rec["median_train"][TF_BEST] * f["train_flops_per_sample"]
        nominal = f"{100 * rate / NOMINAL_BF16_PEAK:.1f} %" if args.device.startswith("cuda") else "n/a (CPU)"
        lines.append(f"| {rec['config']} | {f['train_flops_per_sample'] / 1e9:,.2f} | {fmt(rec['median_train'][TF_BEST])} | "
                     f"{flops_str(rate)} | {100 * rate / f['matmul_peak_flops']:.1f} % of {flops_str(f['matmul_peak_flops'])} "
                     f"{f['matmul_peak_dtype']} matmul | {nominal} |")
    return records, lines


def environment(args, records):
    first = records[0]["runs"][PT_BEST][0] if records else {}
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {
        "machine": f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}",
        "torch": first.get("torch", "?"),
        "gpu": first.get("gpu", "none (CPU run)"),
        "device": args.device,
        "quick": args.quick,
        "rounds": args.rounds,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("TUNEFLOW_BIN"), help="folder holding tuneflow and tuneflow-torch")
    ap.add_argument("--python", default=sys.executable, help="the Python with torch for bench_torch.py")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--threads", type=int, help="CPU threads (default: all cores on CPU, 1 with --quick, libtorch's default on CUDA)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-bench-out")
    ap.add_argument("--work", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tuneflow-gpu-bench"),
                    help="generated images and run folders (kept out of --out, which comes back from the GPU machine)")
    ap.add_argument("--only", help="comma-separated substrings of config names to run (default: all)")
    ap.add_argument("--skip-pretrain", action="store_true")
    ap.add_argument("--extra-rows", action="store_true", help="also PyTorch bf16, and bf16 + channels_last (foreach SGD)")
    args = ap.parse_args()
    args.rows = ROWS[:3] + EXTRA_ROWS + ROWS[3:] if args.extra_rows else ROWS
    if not args.bin:
        raise SystemExit("bench_gpu.py: give the folder holding tuneflow and tuneflow-torch (--bin or TUNEFLOW_BIN)")
    tuneflow, worker = binaries(args.bin)
    args.rounds = args.rounds or (1 if args.quick else 3)
    # --quick on CPU uses one thread: on a shared machine (CI runs other
    # tests beside it) several OpenMP threads per process thrash.
    default = 0 if args.device.startswith("cuda") else 1 if args.quick else os.cpu_count()
    threads = args.threads if args.threads is not None else default
    specs = []
    for kind, spec, quick in CONFIGS:
        spec = dict(spec, **(quick if args.quick else {}), threads=threads, device=args.device)
        name = config_name(kind, spec)
        if not args.only or any(s.strip() in name for s in args.only.split(",")):
            specs.append((name, spec))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-bench-rows.jsonl").write_text("")
    t0 = time.time()
    print(f"bench_gpu.py: {len(specs)} configs x {len(args.rows)} rows x {args.rounds} rounds on {args.device}"
          f"{' (quick)' if args.quick else ''}; results in {out}", file=sys.stderr)
    records, lines = bench_part(args, worker, specs)
    env = environment(args, records)
    head = [f"machine: {env['machine']}", f"torch: {env['torch']}", f"GPU: {env['gpu']}", f"device: {args.device}"
            + (" (--quick: tiny sizes, not a measurement)" if args.quick else ""), ""]
    if args.device == "cpu" and any(keys.get("precision") == "bf16" for _, _, keys in args.rows):
        head += ["On CPU, PyTorch's bf16 rows use autocast with device type \"cpu\" (testing only).", ""]
    result = {"env": env, "bench": records}
    # Part 1's tables now, in case part 2 is cut short.
    (out / "gpu-bench.md").write_text("\n".join(head + lines) + "\n")
    (out / "gpu-bench.json").write_text(json.dumps(result, indent=1) + "\n")
    if not args.skip_pretrain:
        import bench_gpu_pretrain

        result["pretrain"], more = bench_gpu_pretrain.run(args, tuneflow, worker, threads)
        lines += [""] + more
    text = "\n".join(head + lines) + f"\n\n(the whole script took {time.time() - t0:.0f} s)\n"
    (out / "gpu-bench.md").write_text(text)
    (out / "gpu-bench.json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
