#!/usr/bin/env python3
"""Runner benchmarks: tuneflow against DVC and Snakemake, side by side.

Usage: bench_runner.py TUNEFLOW_BIN [--alternatives VENV] [--quick]

Builds each pipeline in a fresh temp folder for each tool, then times the
first run, the no-op rerun (median of several) and a rerun after one param
change. Prints a Markdown table; nothing here is asserted, it is measured.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time


def timed(cmd, cwd, env=None):
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def median_of(n, cmd, cwd, env=None):
    return statistics.median(timed(cmd, cwd, env) for _ in range(n))


SEVEN = ["ingest", "augment", "pretrain", "freeze", "finetune", "extract", "evaluate"]
EDGES = {"augment": ["ingest"], "pretrain": ["augment"], "freeze": ["pretrain"],
         "finetune": ["freeze"], "extract": ["freeze"], "evaluate": ["finetune", "extract"]}


def seven_stages(lr):
    """(name, deps, out, shell command) for the 7-stage pipeline."""
    stages = []
    for name in SEVEN:
        deps = [f"out/{d}.txt" for d in EDGES.get(name, [])]
        extra = f"echo lr={lr}; " if name == "finetune" else ""
        src = " ".join(deps) if deps else "data.txt"
        stages.append((name, deps or ["data.txt"], f"out/{name}.txt",
                       f"({extra}cat {src}) > out/{name}.txt"))
    return stages


def generated(n, shape):
    """A chain (each stage reads the previous one) or a fan-out (all read data.txt)."""
    stages = []
    for i in range(n):
        dep = f"out/s{i-1}.txt" if shape == "chain" and i > 0 else "data.txt"
        stages.append((f"s{i}", [dep], f"out/s{i}.txt", f"cp {dep} out/s{i}.txt"))
    return stages


def write_tuneflow(d, stages):
    with open(os.path.join(d, "pipeline.toml"), "w") as f:
        for name, deps, out, cmd in stages:
            f.write(f'[stage.{name}]\nkind = "command"\ncmd = "mkdir -p out && {cmd}"\n'
                    f'deps = {deps!r}\nouts = ["{out}"]\n\n'.replace("'", '"'))


def write_snakemake(d, stages):
    with open(os.path.join(d, "Snakefile"), "w") as f:
        f.write(f"rule all:\n    input: {[s[2] for s in stages]!r}\n\n")
        for name, deps, out, cmd in stages:
            f.write(f"rule {name}:\n    input: {deps!r}\n    output: {out!r}\n"
                    f"    shell: {cmd!r}\n\n")


def write_dvc(d, stages, venv):
    subprocess.run([f"{venv}/bin/dvc", "init", "--no-scm", "-q"], cwd=d, check=True)
    write_dvc_yaml(d, stages)


def tool_commands(tool, bin_path, venv):
    return {
        "tuneflow": ([bin_path, "run", "pipeline.toml"], [bin_path, "status", "pipeline.toml"]),
        "snakemake": ([f"{venv}/bin/snakemake", "--cores", "1", "--quiet"], None),
        "dvc": ([f"{venv}/bin/dvc", "repro", "-q"], [f"{venv}/bin/dvc", "status", "-q"]),
    }[tool]


def setup(tool, stages, venv):
    d = tempfile.mkdtemp(prefix=f"bench-{tool}-")
    with open(os.path.join(d, "data.txt"), "w") as f:
        f.write("a\nb\nc\n")
    {"tuneflow": lambda: write_tuneflow(d, stages),
     "snakemake": lambda: write_snakemake(d, stages),
     "dvc": lambda: write_dvc(d, stages, venv)}[tool]()
    return d


def bench_seven(tool, bin_path, venv, reps):
    run, _ = tool_commands(tool, bin_path, venv)
    d = setup(tool, seven_stages(0.1), venv)
    first = timed(run, d)
    noop = median_of(reps, run, d)
    # One param change: finetune's command changes, so finetune and evaluate rerun.
    {"tuneflow": lambda: write_tuneflow(d, seven_stages(0.01)),
     "snakemake": lambda: write_snakemake(d, seven_stages(0.01)),
     "dvc": lambda: write_dvc_yaml(d, seven_stages(0.01))}[tool]()
    change = timed(run, d)
    shutil.rmtree(d)
    return first, noop, change


def write_dvc_yaml(d, stages):
    with open(os.path.join(d, "dvc.yaml"), "w") as f:
        f.write("stages:\n")
        for name, deps, out, cmd in stages:
            f.write(f"  {name}:\n    cmd: mkdir -p out && {cmd}\n    deps: {deps!r}\n"
                    f"    outs: [{out!r}]\n")


def bench_many(tool, bin_path, venv, n, shape, reps):
    run, status = tool_commands(tool, bin_path, venv)
    d = setup(tool, generated(n, shape), venv)
    first = timed(run, d)
    noop = median_of(reps, run, d)
    st = median_of(reps, status, d) if status else None
    shutil.rmtree(d)
    return first, noop, st


def bench_tree(bin_path, files):
    d = tempfile.mkdtemp(prefix="bench-tree-")
    data = os.path.join(d, "data")
    os.makedirs(data)
    block = b"x" * 1000
    for i in range(files):
        sub = os.path.join(data, f"{i // 1000:03d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"{i:06d}.bin"), "wb") as f:
            f.write(block + i.to_bytes(8, "little") + b"\n" * 16)
    with open(os.path.join(d, "pipeline.toml"), "w") as f:
        f.write('[stage.count]\nkind = "command"\ncmd = "ls -R data | wc -l > count.txt"\n'
                'deps = ["data"]\nouts = ["count.txt"]\n')
    time.sleep(1.0)  # leave the stat cache's racy window
    first = timed([bin_path, "run", "pipeline.toml"], d)
    recheck = median_of(5, [bin_path, "status", "pipeline.toml"], d)
    noop = median_of(5, [bin_path, "run", "pipeline.toml"], d)
    shutil.rmtree(d)
    return first, recheck, noop


def fmt(x):
    return "n/a" if x is None else (f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tuneflow")
    ap.add_argument("--alternatives", help="venv with dvc and snakemake")
    ap.add_argument("--quick", action="store_true", help="skip the 1,000-stage runs of the alternatives")
    args = ap.parse_args()
    tools = ["tuneflow"] + (["snakemake", "dvc"] if args.alternatives else [])
    print("## 7-stage command pipeline\n")
    print("| tool | first run | no-op rerun (median of 10) | rerun after one param change |")
    print("|---|---|---|---|")
    results = {}
    for tool in tools:
        results[tool] = bench_seven(tool, args.tuneflow, args.alternatives, 10)
        print(f"| {tool} | " + " | ".join(fmt(x) for x in results[tool]) + " |", flush=True)
    for tool in tools[1:]:
        print(f"\nno-op rerun, {tool} / tuneflow: {results[tool][1] / results['tuneflow'][1]:.0f}x")
    print("\n## Generated pipelines\n")
    print("| tool | stages | shape | first run | no-op rerun (tuneflow: median of 3) | status |")
    print("|---|---|---|---|---|---|")
    for n in (1000, 10000):
        for shape in ("chain", "fan-out"):
            for tool in tools:
                if tool != "tuneflow" and (n > 1000 or args.quick or shape == "chain"):
                    continue
                # DVC needs about a minute per no-op rerun at 1,000 stages: one sample.
                r = bench_many(tool, args.tuneflow, args.alternatives, n, shape, 3 if tool == "tuneflow" else 1)
                print(f"| {tool} | {n} | {shape} | " + " | ".join(fmt(x) for x in r) + " |", flush=True)
    print("\n## Folder dependency of 20,000 files of 1 KB\n")
    first, recheck, noop = bench_tree(args.tuneflow, 20000)
    print("| first run (hash all) | unchanged re-check (`status`, median of 5) | no-op `run` (median of 5) |")
    print("|---|---|---|")
    print(f"| {fmt(first)} | {fmt(recheck)} | {fmt(noop)} |")


if __name__ == "__main__":
    main()
