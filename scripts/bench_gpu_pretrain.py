"""Part 2 of bench_gpu.py: tuneflow's real `pretrain` stage (ingest
`image-folder` -> augment flip + normalise -> pretrain ResNet-50 ArcFace
bf16) on a generated folder of RGB images, against the raw
`tuneflow-torch bench` step rate of the same network (arcface, bf16,
channels-last). The issue wants the stage within 10 % of the raw rate.

The images are generated here, deterministically from a seed: blocky
colour noise plus one class-coloured rectangle, so classes are learnable.
They are JPEGs (quality 90) when Pillow is importable, else PNGs written
with zlib (CI has no Pillow). The folder is kept under --work between runs;
each run gets a fresh cache folder, so the stage always trains.
"""
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

try:
    from PIL import Image
except ImportError:
    Image = None

FULL = dict(classes=40, per_class=128, size=112, width=64, batch=128, epochs=4, bench_steps=15)
QUICK = dict(classes=8, per_class=16, size=16, width=8, batch=16, epochs=1, bench_steps=2)

PIPELINE = """
[pipeline]
seed = 1
device = "{device}"

[stage.faces]
kind = "ingest"
format = "image-folder"
path = "{images}"
size = {size}
channels = 3

[stage.faces_aug]
kind = "augment"
data = "faces.train"
ops = [{{ op = "flip" }}, {{ op = "normalize", mean = 0.5, std = 0.5 }}]

[stage.pretrain]
kind = "pretrain"
data = "faces_aug"
model = {{ depth = 50, width = {width}, embedding = 128 }}
loss = {{ kind = "arcface" }}
optimizer = {{ kind = "sgd", lr = 0.1, momentum = 0.9, weight-decay = 5e-4 }}
precision = "bf16"
epochs = {epochs}
batch = {batch}
"""


def rgb(rng, cls, size):
    """Raw RGB bytes: 8x8 colour noise upscaled, plus the class's rectangle."""
    lo = 8
    cells = rng.randbytes(lo * lo * 3)
    row_bytes = []
    for i in range(lo):
        row = b"".join(cells[(i * lo + j) * 3:(i * lo + j + 1) * 3] * (size // lo + 1) for j in range(lo))[: size * 3]
        row_bytes.append(row)
    buf = bytearray(b"".join(row_bytes[min(y * lo // size, lo - 1)] for y in range(size)))
    colour = bytes(random.Random(cls).randrange(256) for _ in range(3))
    w = h = size // 3 + rng.randrange(size // 6 + 1)
    x0, y0 = rng.randrange(size - w + 1), rng.randrange(size - h + 1)
    for y in range(y0, y0 + h):
        buf[(y * size + x0) * 3:(y * size + x0 + w) * 3] = colour * w
    return bytes(buf)


def png(raw, size):
    """A minimal RGB PNG (stdlib only)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + raw[y * size * 3:(y + 1) * size * 3] for y in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b""))


def make_images(work, classes, per_class, size, seed=1):
    """The generated folder (made once; a stamp marks it complete)."""
    ext = "jpg" if Image else "png"
    folder = Path(work) / f"images-{classes}x{per_class}-{size}px-seed{seed}-{ext}"
    stamp = folder / ".complete"
    if stamp.exists():
        return folder, ext, True
    for c in range(classes):
        d = folder / f"class{c:03d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            raw = rgb(random.Random(f"{seed}/{c}/{i}"), c, size)
            if Image:
                Image.frombytes("RGB", (size, size), raw).save(d / f"{i:04d}.jpg", quality=90)
            else:
                (d / f"{i:04d}.png").write_bytes(png(raw, size))
    stamp.write_text("")
    return folder, ext, False


def run(args, tuneflow, worker, threads):
    """Returns (the JSON record, Markdown lines)."""
    from bench_gpu import fmt, ran_as, run_json

    p = QUICK if args.quick else FULL
    images, ext, cached = make_images(args.work, p["classes"], p["per_class"], p["size"])
    print(f"  pretrain: {p['classes'] * p['per_class']} {ext} images in {images}{' (cached)' if cached else ''}", file=sys.stderr)
    spec = dict(depth=50, width=p["width"], input=[3, p["size"], p["size"]], classes=p["classes"], batch=p["batch"],
                steps=p["bench_steps"], threads=threads, device=args.device, loss="arcface", precision="bf16",
                layout="auto", optimizer="flat")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work) as d:
        pipeline = Path(d) / "p.toml"
        pipeline.write_text(PIPELINE.format(device=args.device, images=images, **p))
        env = {k: v for k, v in os.environ.items() if k not in ("TUNEFLOW_REMOTE", "TUNEFLOW_CACHE_DIR")}
        env["XDG_CONFIG_HOME"] = str(Path(d) / "config")
        cmd = [tuneflow, "run", "--json", "--jobs", "1", "--cache-dir", str(Path(d) / "cache"), str(pipeline)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"bench_gpu.py: {' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr[-3000:]}\n{proc.stdout[-2000:]}")
    (Path(args.out) / "pretrain-events.jsonl").write_text(proc.stdout)
    events = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    epochs = [e for e in events if e.get("event") == "epoch" and e.get("stage") == "pretrain"]
    if not epochs:
        raise SystemExit(f"bench_gpu.py: the pretrain stage emitted no epoch events:\n{proc.stdout[-2000:]}")
    # The first epoch pays for cuDNN's autotuning and the allocator's warm-up.
    steady = epochs[1:] or epochs
    sps = statistics.median(e["samples_per_s"] for e in steady)
    wait = statistics.median(e["data_wait_share"] for e in steady)
    benches = []
    for r in range(args.rounds):
        benches.append(run_json([worker, "bench", json.dumps(spec)]))
        print(f"  pretrain: raw bench round {r + 1}/{args.rounds}: {benches[-1]['train_samples_per_s']:.0f} train/s", file=sys.stderr)
    raw = statistics.median(b["train_samples_per_s"] for b in benches)
    ratio = sps / raw
    c, s = p["classes"], p["size"]
    net = f"R50 w{p['width']} 3×{s}×{s} b{p['batch']} ArcFace bf16"
    lines = ["### The `pretrain` stage against the raw step rate", "",
             f"Data: {c * p['per_class']:,} generated {s}×{s} RGB {ext.upper()}s in {c} class folders (90 % train split), "
             f"ingest `image-folder` → augment flip + normalise → pretrain {net}, {p['epochs']} epoch(s); "
             f"stage figures are the median over epoch{'s 2..' if len(epochs) > 1 else ' 1 (only one)'}. "
             f"Raw rate: `tuneflow-torch bench` of the same network (arcface, bf16, the layout the stage picks), median of {args.rounds}.", "",
             "| network | stage samples/s | data-wait share | raw bench train/s | raw bench ran as | stage / raw | within 10 % |",
             "|---|---|---|---|---|---|---|",
             f"| {net} | {fmt(sps)} | {100 * wait:.2f} % | {fmt(raw)} | {ran_as(benches[0])} | {ratio:.2f} | "
             f"{'yes' if ratio >= 0.9 else 'no'} |", "",
             "Per epoch: " + ", ".join(f"{e['epoch']}: {e['samples_per_s']:,.0f}/s wait {100 * e['data_wait_share']:.2f} %" for e in epochs)]
    record = {"params": p, "images": str(images), "format": ext, "epochs": epochs, "bench": benches, "spec": spec,
              "stage_samples_per_s": sps, "data_wait_share": wait, "raw_train_samples_per_s": raw, "ratio": ratio}
    return record, lines
