"""The PyTorch side of the training benchmark (BENCHMARKS.md).

Defines the same ResNet as tuneflow's `torch/src/model.rs` (3x3 stem, basic
blocks with a 1x1 projection shortcut, average pooling, linear + BatchNorm
embedding of 128, linear head), trains it with softmax cross-entropy and
torch.optim.SGD (momentum 0.9, weight decay 5e-4), and measures training and
inference samples/s on random input, like `tuneflow-torch bench`. With
`--flops` it also counts one training step's FLOPs and measures the
machine's fp32 matmul peak.
"""
import json
import sys
import time

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (self.proj(x) if self.proj is not None else x))


class ResNet(nn.Module):
    def __init__(self, depth, width, cin, classes, embedding=128):
        super().__init__()
        counts = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth]
        self.stem = nn.Sequential(nn.Conv2d(cin, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, c = [], width
        for i, n in enumerate(counts):
            out = width << i
            for b in range(n):
                layers.append(Block(c, out, 2 if i > 0 and b == 0 else 1))
                c = out
        self.layers = nn.Sequential(*layers)
        self.embedding = nn.Sequential(nn.Linear(c, embedding), nn.BatchNorm1d(embedding))
        self.head = nn.Linear(embedding, classes)

    def forward(self, x):
        y = self.layers(self.stem(x))
        return self.head(self.embedding(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1)))


def main():
    spec = json.loads(sys.argv[1])
    if spec.get("threads", 0) > 0:
        torch.set_num_threads(spec["threads"])
    device = spec.get("device", "cpu")
    torch.manual_seed(0)
    c, h, w = spec["input"]
    net = ResNet(spec["depth"], spec["width"], c, spec["classes"]).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(spec["batch"], c, h, w, device=device)
    y = torch.randint(spec["classes"], (spec["batch"],), device=device)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        net.train()
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    def infer():
        net.eval()
        with torch.no_grad():
            return net(x)[0, 0].item()

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
    }
    if "--flops" in sys.argv:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            step()
        out["train_flops_per_sample"] = counter.get_total_flops() / spec["batch"]
        a = torch.randn(2048, 2048, device=device)
        b = torch.randn(2048, 2048, device=device)
        for _ in range(3):
            a @ b
        t = time.perf_counter()
        n = 10
        for _ in range(n):
            a @ b
        out["matmul_peak_flops"] = n * 2 * 2048**3 / (time.perf_counter() - t)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
