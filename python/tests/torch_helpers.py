"""Shared by the torch tests: model configs of every kind tuneflow
builds, and models with random weights and BatchNorm statistics."""

import torch

from tuneflow_artifacts.torch_model import BatchNorm, TuneflowModel

LOSS = {"scale": 30.0, "margin": 0.3, "easy-margin": False, "label-smoothing": 0.0, "per-class": 4}


def cfg(kind="image", shape=(1, 12, 12), loss="softmax", depth=10, stride=1, ops=(), classes=3):
    image = kind == "image"
    return {"model": {"depth": depth, "width": 4, "embedding": 8, "stem-stride": stride,
                      "in-channels": shape[0] if image else 1, "pooling": "avg" if image else "stats"},
            "loss": {"kind": loss, **LOSS}, "classes": [f"c{i}" for i in range(classes)],
            "data-kind": kind, "data-shape": list(shape), "eval-ops": list(ops)}


CONFIGS = {
    "r10-grey-softmax": cfg(ops=[{"op": "normalize", "mean": [0.13], "std": [0.31]}]),
    "r18-rgb-cosface-stride2": cfg(shape=(3, 16, 16), loss="cosface", depth=18, stride=2),
    "r34-grey-triplet": cfg(loss="triplet", depth=34),
    "r50-rgb-arcface": cfg(shape=(3, 16, 16), loss="arcface", depth=50),
    "r10-fbank24-stride2": cfg(kind="fbank", shape=(24,), stride=2),
    "r50-fbank40-triplet": cfg(kind="fbank", shape=(40,), depth=50, loss="triplet"),
}


def randomised(config, seed=0):
    """A model with random weights and BatchNorm statistics."""
    torch.manual_seed(seed)
    m = TuneflowModel(config)
    with torch.no_grad():
        for bn in (x for x in m.modules() if isinstance(x, BatchNorm)):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.1)
    return m.eval()
