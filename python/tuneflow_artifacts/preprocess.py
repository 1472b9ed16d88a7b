"""The network inputs ``extract`` builds from dataset items, in numpy
(Rust: ``stages/src/data/augment_ops.rs``, ``stages/src/data/loader.rs``,
``torch/src/extract.rs``).

- Images stored as u8: the model's ``eval-ops`` that are ``normalize``
  ops, applied in order (``(x / 255 - mean[c]) / std[c]``, in float64,
  stored as float32; a channel past the end of ``mean``/``std`` takes the
  first value); with no ``normalize`` op, ``x / 255`` in float32.
- Images stored as f32 (``augment copies``): the stored values, as they are.
- Spectrograms (``frames x bins`` f32): as stored; no op applies. With
  ``segment = N`` they are cut into windows (see :func:`segments`).
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np


def normalize_ops(eval_ops: Sequence[dict]) -> List[dict]:
    """The ops ``extract`` applies to images: the ``normalize`` ones."""
    return [op for op in eval_ops if op.get("op") == "normalize"]


def image_input(data: np.ndarray, eval_ops: Sequence[dict]) -> np.ndarray:
    """One image item (``C x H x W``) as ``extract`` feeds it (float32)."""
    if data.dtype == np.float32:
        return data.astype(np.float32, copy=True)
    x = data.astype(np.float32)
    ops = normalize_ops(eval_ops)
    if not ops:
        return x / np.float32(255.0)
    c = x.shape[0]
    for op in ops:
        mean, std = list(op.get("mean", [])), list(op.get("std", []))
        m = np.array([mean[i] if i < len(mean) else (mean[0] if mean else 0.0) for i in range(c)])
        s = np.array([std[i] if i < len(std) else (std[0] if std else 1.0) for i in range(c)])
        x = ((x.astype(np.float64) / 255.0 - m[:, None, None]) / s[:, None, None]).astype(np.float32)
    return x


def segments(x: np.ndarray, length: int) -> np.ndarray:
    """``frames x bins`` features as windows of ``length`` frames with hop
    ``length`` (``S x length x bins``); the tail that does not fill a
    window is dropped, and an utterance shorter than one window is
    repeated from its start to fill it."""
    frames = x.shape[0]
    if frames == 0:
        raise ValueError("an utterance with no frames has no segments")
    if frames < length:
        reps = (length + frames - 1) // frames
        x = np.tile(x, (reps, 1))[:length]
    n = x.shape[0] // length
    return x[: n * length].reshape(n, length, -1)
