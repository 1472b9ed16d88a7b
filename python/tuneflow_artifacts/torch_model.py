"""A tuneflow model folder as a ``torch.nn.Module``, and ``extract`` in
PyTorch (needs ``torch``; the rest of the package does not).

The network is the one ``torch/src/model.rs`` and ``torch/src/heads.rs``
build, with the same parameter and buffer names, so ``state_dict()`` keys
are the ``model.safetensors`` names (``backbone.stem.conv.weight`` ...
``head.weight``; BatchNorm layers have no ``num_batches_tracked``)::

    from tuneflow_artifacts import read_dataset
    from tuneflow_artifacts.torch_model import load_model, extract, save_model
    model = load_model("export/finetune")             # eval mode, on CPU
    emb = extract(model, read_dataset("export/target.test"), flip=False)
    save_model(model, "export/finetune-copy")           # tuneflow reads it

- Input: images ``N x C x H x W``; features ``N x T x F``, fed as
  ``N x 1 x F x T``.
- Stem: 3x3 conv (stride ``stem-stride``, no bias), BatchNorm, ReLU; no
  max-pool. Layers 1-4: basic blocks (depth 10/18/34) or bottlenecks (50),
  width doubling per layer, stride 2 in the first block of layers 2-4, a
  1x1 projection (``proj``, ``proj_bn``) where the shape changes.
- Pooling: average over H x W (images); for non-image data, mean and
  population standard deviation (clamped to >= 1e-5) over time of every
  (channel, frequency) row, concatenated.
- Embedding: Linear (with bias) then BatchNorm1d: the embedding.
- Head: Linear (softmax), cosine against ``head.weight`` (ArcFace and
  CosFace: the plain cosines are the scores), or none (triplet).
- BatchNorm: eps 1e-5, momentum 0.1; a layer marked frozen
  (:meth:`TuneflowModel.apply_freeze`) stays in eval mode while training,
  as in ``fine-tune``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._common import ArtifactError
from .dataset import Dataset
from .embeddings import Embeddings
from .model import (DEPTHS, check_config, check_tensors, read_model, resolve,
                    write_model)
from .preprocess import image_input, segments


class BatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over dim 1 (2-d or 4-d input) without a
    ``num_batches_tracked`` buffer; ``frozen`` keeps it in eval mode."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-5, momentum=0.1)
        self.register_buffer("num_batches_tracked", None)
        self.frozen = False

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"BatchNorm expects 2-d or 4-d input, not {x.dim()}-d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        train = self.training and not self.frozen
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            train, self.momentum, self.eps)


def _conv(cin: int, cout: int, k: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


class Stem(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.conv, self.bn = _conv(cin, width, 3, stride), BatchNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Block(nn.Module):
    """A basic block (two 3x3 convs) or a bottleneck (1x1, 3x3, 1x1 x4)."""

    def __init__(self, cin: int, cout: int, stride: int, bottleneck: bool):
        super().__init__()
        shapes = ([(cin, cout, 1, 1), (cout, cout, 3, stride), (cout, cout * 4, 1, 1)]
                  if bottleneck else [(cin, cout, 3, stride), (cout, cout, 3, 1)])
        self.n = len(shapes)
        for i, (a, b, k, s) in enumerate(shapes, 1):
            setattr(self, f"conv{i}", _conv(a, b, k, s))
            setattr(self, f"bn{i}", BatchNorm(b))
        self.out = shapes[-1][1]
        if stride != 1 or cin != self.out:
            self.proj, self.proj_bn = _conv(cin, self.out, 1, stride), BatchNorm(self.out)
        else:
            self.proj = self.proj_bn = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i in range(1, self.n + 1):
            y = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(y))
            if i < self.n:
                y = F.relu(y)
        skip = x if self.proj is None else self.proj_bn(self.proj(x))
        return F.relu(y + skip)


class Embedding(nn.Module):
    def __init__(self, pooled: int, size: int):
        super().__init__()
        self.fc, self.bn = nn.Linear(pooled, size), BatchNorm(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(x))


class ResNet(nn.Module):
    """The backbone: stem, layer1..layer4, pooling and the embedding layer.
    ``r`` is :func:`tuneflow_artifacts.model.resolve`'s result."""

    def __init__(self, r: dict):
        super().__init__()
        counts, bottleneck = DEPTHS[r["depth"]]
        self.stem = Stem(r["in_channels"], r["width"], r["stem_stride"])
        cin = r["width"]
        for layer, n in enumerate(counts):
            blocks = []
            for b in range(n):
                stride = 2 if layer > 0 and b == 0 else 1
                blocks.append(Block(cin, r["width"] << layer, stride, bottleneck))
                cin = blocks[-1].out
            setattr(self, f"layer{layer + 1}", nn.Sequential(*blocks))
        self.stats = r["stats"]
        pooled = cin
        if self.stats:
            f = (r["bins"] + r["stem_stride"] - 1) // r["stem_stride"]
            for _ in range(3):
                f = (f + 1) // 2
            pooled = 2 * cin * f
        self.embedding = Embedding(pooled, r["embedding"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # N x T x F features -> N x 1 x F x T
            x = x.transpose(1, 2).unsqueeze(1)
        y = self.stem(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            y = layer(y)
        if self.stats:
            n, c, f, t = y.shape
            y = y.reshape(n, c * f, t)
            pooled = torch.cat([y.mean(2), y.std(2, unbiased=False).clamp_min(1e-5)], 1)
        else:
            pooled = F.adaptive_avg_pool2d(y, 1).flatten(1)
        return self.embedding(pooled)


class CosineHead(nn.Module):
    """ArcFace / CosFace head: class centres ``weight`` (classes x dim);
    the scores are cosines."""

    def __init__(self, classes: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim) * 0.01)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        def unit(t):
            return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return unit(emb.float()) @ unit(self.weight.float()).t()


class TuneflowModel(nn.Module):
    """Backbone plus head for a tuneflow ``config.json`` (a dict); calling
    it gives embeddings, :meth:`logits` the head's class scores. The config
    is kept in ``config`` (with ``metrics`` and ``freeze``) for
    :func:`save_model`."""

    def __init__(self, config: dict, data_kind: Optional[str] = None, data_shape=None):
        super().__init__()
        self.config = dict(config)
        checked = check_config(self.config, "config", "worker")
        r = resolve(checked, data_kind, data_shape)
        self.backbone = ResNet(r)
        if r["loss"] in ("arcface", "cosface"):
            self.head = CosineHead(r["classes"], r["embedding"])
        elif r["loss"] == "triplet":
            self.head = None
        else:
            self.head = nn.Linear(r["embedding"], r["classes"])
        self.metrics: Optional[dict] = None
        self.freeze: Optional[dict] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def logits(self, emb: torch.Tensor) -> Optional[torch.Tensor]:
        """Plain class scores (no margin), or None without a head."""
        return None if self.head is None else self.head(emb)

    def tensors(self) -> dict:
        """Every parameter and buffer as a float32 numpy array, by name."""
        return {k: v.detach().to("cpu", torch.float32).numpy().copy()
                for k, v in self.state_dict().items() if not k.endswith("num_batches_tracked")}

    def load_tensors(self, tensors: dict) -> None:
        """Copies weights in, exactly; names and shapes must be the model's."""
        check_tensors(tensors, check_config(self.config, "config", "worker"), "weights")
        own = dict(self.named_parameters())
        own.update((k, v) for k, v in self.named_buffers() if v is not None)
        with torch.no_grad():
            for k, a in tensors.items():
                own[k].copy_(torch.from_numpy(np.asarray(a, dtype=np.float32)))

    def apply_freeze(self, names: Iterable[str]) -> None:
        """Freezes these tensors (``freeze.json``'s or ``config.json``'s
        ``frozen``): no gradient, and a BatchNorm whose weight is frozen stays
        in eval mode, as ``fine-tune`` does."""
        names = set(names)
        for k, p in self.named_parameters():
            if k in names:
                p.requires_grad_(False)
        for k, m in self.named_modules():
            if isinstance(m, BatchNorm) and f"{k}.weight" in names:
                m.frozen = True


def load_model(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu") -> TuneflowModel:
    """Loads a model folder (checked by :func:`read_model`) in eval mode."""
    m = read_model(path)
    model = TuneflowModel(m.config)
    model.load_tensors(m.tensors)
    model.metrics, model.freeze = m.metrics, m.freeze
    return model.to(device).eval()


def save_model(module: nn.Module, path: Union[str, os.PathLike], config: Optional[dict] = None,
               metrics: Optional[dict] = None, freeze: Optional[dict] = None) -> Path:
    """Writes ``module`` as a tuneflow model folder (see
    :func:`tuneflow_artifacts.write_model`). ``config`` defaults to
    ``module.config``; ``metrics`` and ``freeze`` to the module's own. Any
    module whose ``state_dict()`` has the tuneflow names works."""
    config = config if config is not None else getattr(module, "config", None)
    if config is None:
        raise ArtifactError("save_model needs a config (the module has none)")
    tensors = {k: v.detach().to("cpu", torch.float32).numpy()
               for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
    return write_model(path, tensors, config,
                       metrics if metrics is not None else getattr(module, "metrics", None),
                       freeze if freeze is not None else getattr(module, "freeze", None))


@torch.no_grad()
def extract(model: TuneflowModel, data: Dataset, normalize: bool = True, flip: bool = False,
            segment: int = 0, batch: int = 64) -> Embeddings:
    """What tuneflow's ``extract`` stage computes, with its params: images
    in batches of ``batch`` (the model's ``normalize`` eval-ops; with
    ``flip``, averaged with the mirror image); spectrograms one at a time,
    whole or as the mean over windows of ``segment`` frames; then, with
    ``normalize``, L2-normalised. Head scores come from the embedding
    before normalisation."""
    cfg = model.config
    shape = data.info.shape
    if (cfg["data-shape"] or [None])[0] != (shape or [None])[0]:
        raise ArtifactError(f"the model was trained on data of shape {cfg['data-shape']}, this dataset has {shape}")
    if (cfg["data-kind"] == "image") != (data.info.kind == "image"):
        raise ArtifactError(f"the model was trained on {cfg['data-kind']} data, this dataset holds {data.info.kind}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ops = cfg.get("eval-ops", [])
    embs, scores = [], []

    def put(e: torch.Tensor) -> None:
        s = model.logits(e)
        if s is not None:
            scores.append(s.cpu())
        embs.append(e.cpu())

    if data.info.kind == "image":
        for start in range(0, len(data), max(batch, 1)):
            items = [data[i] for i in range(start, min(start + max(batch, 1), len(data)))]
            x = torch.from_numpy(np.stack([image_input(it.data, ops) for it in items])).to(device)
            e = model(x)
            if flip:
                e = (e + model(x.flip(3))) / 2.0
            put(e)
    else:
        for it in data:
            x = np.asarray(it.data, dtype=np.float32)
            x = x[None] if segment == 0 else segments(x, segment)
            put(model(torch.from_numpy(np.array(x, dtype=np.float32)).to(device)).mean(0, keepdim=True))
    model.train(was_training)
    dim = model.backbone.embedding.fc.out_features
    e = torch.cat(embs) if embs else torch.zeros(0, dim)
    if normalize:
        e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)
    idx = data.indices.astype(np.int64)
    return Embeddings(vectors=e.numpy().astype(np.float32), ids=[data.id_of(int(i)) for i in idx],
                      labels=data.labels, indices=idx, classes=list(data.info.classes),
                      normalized=normalize, scores=torch.cat(scores).numpy() if scores else None,
                      head_classes=list(cfg["classes"]) if scores else None,
                      trials=data.trials).validate("extract")
