"""The PyTorch side of the training benchmark (BENCHMARKS.md).

Defines the same ResNet as tuneflow's `torch/src/model.rs` (3x3 stem,
basic blocks for depths 10/18/34 and bottlenecks for 50, each with a 1x1
projection shortcut when the shape changes, average pooling, linear +
BatchNorm embedding of 128, then a linear softmax head or an ArcFace
head), trains it with torch.optim.SGD (momentum 0.9, weight decay 5e-4),
and measures training and inference samples/s on random input, like
`tuneflow-torch bench`. Usage: bench_torch.py SPEC_JSON [--flops]

Spec keys: depth, width, input [C,H,W], classes, batch, steps, threads,
device ("cpu"|"cuda"), and optionally
  loss       "softmax" (default) | "arcface" (s=30, m=0.5, as tuneflow's)
  precision  "fp32" (default) | "bf16": torch.autocast with bfloat16 around
             forward + loss (device type "cuda", or "cpu" on CPU)
  layout     "contiguous" (default) | "channels-last": model and input in
             torch.channels_last ("auto": channels-last on CUDA)
  optimizer  torch's default when absent (multi-tensor "foreach" on CUDA,
             "single" tensor loop on CPU) | "foreach" | "fused" | "single"
  cudnn_benchmark  bool, default true on CUDA
  peak_size  the matmul side for --flops' peak (2048 on CPU, 8192 on CUDA)
The output JSON echoes what actually ran (`precision`, `layout`,
`optimizer`, and `optimizer_note` when a request fell back). With
`--flops` it also counts one training step's FLOPs (torch.utils.
flop_counter, which counts under autocast too) and measures the matmul
peak: bf16 when precision is bf16 on CUDA, else fp32.
"""
import json
import math
import sys
import time

import torch
from torch import nn


class Block(nn.Module):
    """Basic (two 3x3) or bottleneck (1x1, 3x3 stride, 1x1 to 4x) block."""

    def __init__(self, cin, cout, stride, bottleneck):
        super().__init__()
        if bottleneck:
            shapes, out = [(cin, cout, 1, 1), (cout, cout, 3, stride), (cout, 4 * cout, 1, 1)], 4 * cout
        else:
            shapes, out = [(cin, cout, 3, stride), (cout, cout, 3, 1)], cout
        self.convs = nn.ModuleList(nn.Conv2d(a, b, k, s, k // 2, bias=False) for a, b, k, s in shapes)
        self.bns = nn.ModuleList(nn.BatchNorm2d(b) for _, b, _, _ in shapes)
        self.proj = None
        if stride != 1 or cin != out:
            self.proj = nn.Sequential(nn.Conv2d(cin, out, 1, stride, 0, bias=False), nn.BatchNorm2d(out))
        self.out = out

    def forward(self, x):
        y = x
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            y = bn(conv(y))
            if i < len(self.convs) - 1:
                y = torch.relu(y)
        return torch.relu(y + (self.proj(x) if self.proj is not None else x))


class ArcFace(nn.Module):
    """tuneflow's margin head: normalised class centres, s*cos(theta+m) for
    the target while theta+m < pi, else s*(cos - m*sin(m)) (no bias)."""

    def __init__(self, embedding, classes, s=30.0, m=0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, embedding) * 0.01)
        self.s, self.m = s, m

    def forward(self, emb, y):
        cos = nn.functional.normalize(emb.float(), dim=1) @ nn.functional.normalize(self.weight.float(), dim=1).t()
        c = cos.clamp(-1 + 1e-7, 1 - 1e-7)
        phi = c * math.cos(self.m) - (1 - c * c).sqrt() * math.sin(self.m)
        phi = torch.where(c > math.cos(math.pi - self.m), phi, c - math.sin(math.pi - self.m) * self.m)
        hot = torch.zeros_like(cos, dtype=torch.bool).scatter_(1, y.unsqueeze(1), True)
        return torch.where(hot, phi, cos) * self.s


class ResNet(nn.Module):
    def __init__(self, depth, width, cin, classes, loss="softmax", embedding=128):
        super().__init__()
        counts = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}[depth]
        bottleneck = depth == 50
        self.stem = nn.Sequential(nn.Conv2d(cin, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, c = [], width
        for i, n in enumerate(counts):
            for b in range(n):
                block = Block(c, width << i, 2 if i > 0 and b == 0 else 1, bottleneck)
                layers.append(block)
                c = block.out
        self.layers = nn.Sequential(*layers)
        self.embedding = nn.Sequential(nn.Linear(c, embedding), nn.BatchNorm1d(embedding))
        self.arcface = ArcFace(embedding, classes) if loss == "arcface" else None
        self.head = nn.Linear(embedding, classes) if loss != "arcface" else None

    def embed(self, x):
        y = self.layers(self.stem(x))
        return self.embedding(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))

    def logits(self, emb, y=None):
        """Training logits (with the margin when `y` is given) or plain scores."""
        if self.arcface is None:
            return self.head(emb)
        if y is None:
            return nn.functional.normalize(emb.float(), dim=1) @ nn.functional.normalize(self.arcface.weight.float(), dim=1).t()
        return self.arcface(emb, y)


def make_optimizer(params, name, device):
    """torch.optim.SGD as asked; returns (optimizer, what ran, note)."""
    kw = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)
    if name is None:
        return torch.optim.SGD(params, **kw), ("foreach" if device.startswith("cuda") else "single"), None
    if name == "fused":
        try:
            return torch.optim.SGD(params, fused=True, **kw), "fused", None
        except (RuntimeError, ValueError) as e:
            return torch.optim.SGD(params, foreach=True, **kw), "foreach", f"fused SGD unavailable here ({e}); ran foreach"
    if name in ("foreach", "single"):
        return torch.optim.SGD(params, foreach=name == "foreach", **kw), name, None
    raise SystemExit(f"bench_torch.py: unknown optimizer {name!r} (foreach, fused or single)")


def matmul_peak(device, dtype, n=None):
    """Measured matmul FLOP/s: n x n (default 2048 on CPU, 8192 on CUDA)."""
    n = n or (8192 if device.startswith("cuda") else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    reps = 20 if device.startswith("cuda") else 10
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return reps * 2 * n**3 / (time.perf_counter() - t)


def main():
    spec = json.loads(sys.argv[1])
    if spec.get("threads", 0) > 0:
        torch.set_num_threads(spec["threads"])
    device = spec.get("device", "cpu")
    cuda = device.startswith("cuda")
    precision = spec.get("precision", "fp32")
    layout = spec.get("layout", "contiguous")
    if layout == "auto":
        layout = "channels-last" if cuda else "contiguous"
    if precision not in ("fp32", "bf16") or layout not in ("contiguous", "channels-last"):
        raise SystemExit(f"bench_torch.py: precision {precision!r} / layout {layout!r} not understood")
    if cuda:
        torch.backends.cudnn.benchmark = bool(spec.get("cudnn_benchmark", True))
    torch.manual_seed(0)
    c, h, w = spec["input"]
    loss_kind = spec.get("loss", "softmax")
    net = ResNet(spec["depth"], spec["width"], c, spec["classes"], loss_kind).to(device)
    x = torch.randn(spec["batch"], c, h, w, device=device)
    if layout == "channels-last":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt, optimizer, note = make_optimizer(net.parameters(), spec.get("optimizer"), device)
    y = torch.randint(spec["classes"], (spec["batch"],), device=device)
    loss_fn = nn.CrossEntropyLoss()

    def autocast():
        return torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step():
        net.train()
        with autocast():
            loss = loss_fn(net.logits(net.embed(x), y).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    def infer():
        net.eval()
        with torch.no_grad(), autocast():
            return net.logits(net.embed(x))[0, 0].item()

    for _ in range(3):
        step()
        infer()
    t = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    train = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(spec["steps"]):
        infer()
    inference = time.perf_counter() - t
    samples = spec["steps"] * spec["batch"]
    out = {
        "impl": "pytorch",
        "train_samples_per_s": samples / train,
        "infer_samples_per_s": samples / inference,
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in net.parameters()),
        "device": device,
        "loss": loss_kind,
        "precision": precision,
        "precision_autocast_device": ("cuda" if cuda else "cpu") if precision == "bf16" else None,
        "layout": layout,
        "optimizer": optimizer,
        "cudnn_benchmark": torch.backends.cudnn.benchmark if cuda else None,
        "torch": torch.__version__,
    }
    if note:
        out["optimizer_note"] = note
    if cuda:
        out["gpu"] = torch.cuda.get_device_name()
    if "--flops" in sys.argv:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            step()
        out["train_flops_per_sample"] = counter.get_total_flops() / spec["batch"]
        dtype = torch.bfloat16 if precision == "bf16" and cuda else torch.float32
        out["matmul_peak_flops"] = matmul_peak(device, dtype, spec.get("peak_size"))
        out["matmul_peak_dtype"] = "bf16" if dtype == torch.bfloat16 else "fp32"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
