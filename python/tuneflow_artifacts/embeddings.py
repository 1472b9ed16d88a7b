"""The ``embeddings`` artifact of ``extract`` (Rust:
``stages/src/formats/embeddings.rs``, written by ``torch/src/extract.rs``).

A folder with ``embeddings.f32`` (``count x dim`` float32, little-endian,
row-major, no header), ``items.json`` (compact JSON: ``count``, ``dim``,
``ids``, ``labels``, ``indices``, ``classes``, ``head-classes``,
``normalized``), and optionally ``scores.f32`` (``count x len(head-classes)``
float32) and ``trials.txt`` (``label i j`` lines over dataset indices,
copied from the dataset).

tuneflow's reader (``formats::embeddings::load``) requires ``items.json``
with every field but ``head-classes`` and ``embeddings.f32`` holding
exactly ``count * dim`` floats; it checks nothing else. :func:`read_embeddings`
also refuses what ``evaluate`` would crash on or misread (lengths of
``ids``/``labels``/``indices`` other than ``count``, a ``scores.f32`` of
the wrong size, a malformed ``trials.txt``, a file size that is not whole
floats). :func:`write_embeddings` writes the bytes ``extract`` writes.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

import numpy as np

from ._common import (ArtifactError, U32_MAX, check_bool, check_str_list, check_uint,
                      check_uint_list, dump_json, fail, read_json, require, write_bytes)
from .trials import format_trials, parse_trials

FIELDS = ("count", "dim", "ids", "labels", "indices", "classes", "normalized")


@dataclass
class Embeddings:
    """An embeddings artifact in memory. Row ``r`` of ``vectors`` is item
    ``ids[r]``, with class ``classes[labels[r]]``, at index ``indices[r]``
    of the whole dataset (what ``trials`` refers to)."""
    vectors: np.ndarray
    ids: List[str]
    labels: np.ndarray
    indices: np.ndarray
    classes: List[str]
    normalized: bool
    scores: Optional[np.ndarray] = None
    head_classes: Optional[List[str]] = None
    trials: Optional[np.ndarray] = None

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def meta(self) -> dict:
        """``items.json`` as a dict, keys in tuneflow's order."""
        return {"count": self.count, "dim": self.dim, "ids": list(self.ids),
                "labels": [int(x) for x in self.labels],
                "indices": [int(x) for x in self.indices],
                "classes": list(self.classes),
                "head-classes": None if self.head_classes is None else list(self.head_classes),
                "normalized": bool(self.normalized)}

    def validate(self, where: str = "embeddings") -> "Embeddings":
        """Checks and normalises the fields in place (vectors and scores to
        float32, labels and indices to int64); returns self."""
        v = np.asarray(self.vectors)
        if v.ndim != 2 or v.dtype.kind != "f":
            fail(where, f"`vectors` must be a 2-d float array (count x dim), not {v.dtype} {v.shape}")
        if v.shape[1] == 0:
            fail(where, "`dim` must be at least 1")
        self.vectors = np.ascontiguousarray(v, dtype=np.float32)
        n = self.count
        if len(self.ids) != n:
            fail(where, f"`ids` has {len(self.ids)} entries for {n} rows")
        check_str_list(where, "ids", self.ids)
        self.ids = list(self.ids)
        self.classes = check_str_list(where, "classes", self.classes)
        for name in ("labels", "indices"):
            a = np.asarray(getattr(self, name))
            if a.shape != (n,) or (n and a.dtype.kind not in "iu"):
                fail(where, f"`{name}` must be {n} integers, not {a.dtype} {a.shape}")
            a = a.astype(np.int64)
            if n and (a.min() < 0 or a.max() > U32_MAX):
                fail(where, f"`{name}` must hold unsigned 32-bit integers")
            setattr(self, name, a)
        if n and self.labels.max() >= len(self.classes):
            fail(where, f"`labels` holds {int(self.labels.max())}, but there are {len(self.classes)} classes")
        if len(np.unique(self.indices)) != n:
            fail(where, "`indices` holds an item twice")
        check_bool(where, "normalized", self.normalized)
        if (self.scores is None) != (self.head_classes is None):
            fail(where, "`scores` and `head_classes` go together: give both or neither")
        if self.scores is not None:
            self.head_classes = check_str_list(where, "head_classes", self.head_classes)
            s = np.asarray(self.scores)
            want = (n, len(self.head_classes))
            if s.shape != want or s.dtype.kind != "f" or not self.head_classes:
                fail(where, f"`scores` must be a float array of shape {want} (rows x head classes), not {s.dtype} {s.shape}")
            self.scores = np.ascontiguousarray(s, dtype=np.float32)
        if self.trials is not None:
            format_trials(self.trials, None, f"{where}: trials")  # checks
            self.trials = np.asarray(self.trials, dtype=np.int64).reshape(-1, 3)
        return self


def _f32(path: Path, where: str) -> np.ndarray:
    raw = path.read_bytes()
    if len(raw) % 4:
        fail(where, f"`{path.name}` holds {len(raw)} bytes, not whole f32 values")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def read_embeddings(path: Union[str, os.PathLike]) -> Embeddings:
    """Reads an embeddings artifact folder (see the module docstring for
    what it accepts)."""
    path = Path(path)
    where = str(path)
    meta_path, matrix_path = path / "items.json", path / "embeddings.f32"
    for p in (meta_path, matrix_path):
        if not p.is_file():
            fail(where, f"has no `{p.name}` (is it an `extract` stage's output?)")
    meta = read_json(meta_path)
    w = str(meta_path)
    require(w, meta, FIELDS)
    count, dim = check_uint(w, "count", meta["count"]), check_uint(w, "dim", meta["dim"])
    head = meta.get("head-classes")
    if head is not None:
        check_str_list(w, "head-classes", head)
    flat = _f32(matrix_path, where)
    if flat.size != count * dim:
        fail(where, f"embeddings.f32 holds {flat.size} values, not {count} x {dim}")
    scores_path, trials_path = path / "scores.f32", path / "trials.txt"
    scores = None
    if scores_path.exists():
        scores = _f32(scores_path, where)
        if head is None:
            fail(where, "has `scores.f32` but items.json has no `head-classes`")
        if scores.size != count * len(head):
            fail(where, f"scores.f32 holds {scores.size} values, not {count} x {len(head)} head classes")
        scores = scores.reshape(count, len(head))
    elif head is not None:
        fail(where, "items.json names `head-classes` but there is no `scores.f32`")
    trials = parse_trials(trials_path.read_text("utf-8"), str(trials_path)) if trials_path.exists() else None
    e = Embeddings(vectors=flat.reshape(count, dim), ids=check_str_list(w, "ids", meta["ids"]),
                   labels=np.asarray(check_uint_list(w, "labels", meta["labels"]), dtype=np.int64),
                   indices=np.asarray(check_uint_list(w, "indices", meta["indices"]), dtype=np.int64),
                   classes=check_str_list(w, "classes", meta["classes"]),
                   normalized=check_bool(w, "normalized", meta["normalized"]),
                   scores=scores, head_classes=head, trials=trials)
    return e.validate(w)


def write_embeddings(path: Union[str, os.PathLike], vectors: Any = None, *, ids: Sequence[str] = (),
                     labels: Any = (), indices: Any = None, classes: Sequence[str] = (),
                     normalized: Optional[bool] = None, scores: Any = None,
                     head_classes: Optional[Sequence[str]] = None, trials: Any = None) -> Path:
    """Writes an embeddings artifact folder (new or empty) that ``evaluate``
    and ``tuneflow export`` read. Pass an :class:`Embeddings` as
    ``vectors``, or the fields: ``vectors`` (``count x dim`` floats, stored
    as float32), ``ids``, ``labels`` (indices into ``classes``),
    ``indices`` (dataset indices; default ``0..count``), ``normalized``
    (required: whether rows are L2-normalised), ``scores``/``head_classes`` (both or neither) and ``trials``.
    Raises ArtifactError naming the field."""
    if isinstance(vectors, Embeddings):
        e = vectors
    else:
        v = np.asarray(vectors)
        e = Embeddings(vectors=v, ids=list(ids), labels=np.asarray(labels),
                       indices=np.arange(len(v)) if indices is None else np.asarray(indices),
                       classes=list(classes), normalized=normalized, scores=scores,
                       head_classes=None if head_classes is None else list(head_classes), trials=trials)
    path = Path(path)
    where = f"write_embeddings({path})"
    e.validate(where)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        fail(where, "the target exists and is not an empty folder")
    path.mkdir(parents=True, exist_ok=True)
    write_bytes(path / "embeddings.f32", e.vectors.astype("<f4").tobytes())
    if e.scores is not None:
        write_bytes(path / "scores.f32", e.scores.astype("<f4").tobytes())
    write_bytes(path / "items.json", dump_json(e.meta(), pretty=False))
    if e.trials is not None:
        write_bytes(path / "trials.txt", format_trials(e.trials, None, f"{where}: trials"))
    return path


def read_export(path: Union[str, os.PathLike]) -> dict:
    """Reads what ``tuneflow export --format npy|safetensors`` writes.
    ``.npy``: ``{"embeddings": array}``. ``.safetensors``: ``embeddings``
    (F32 rows x dim), ``labels`` (I64) and, from the metadata, ``ids`` and
    ``classes`` (JSON lists) and ``normalized`` (bool)."""
    path = Path(path)
    if path.suffix == ".npy":
        return {"embeddings": np.load(path, allow_pickle=False)}
    from safetensors.numpy import load_file
    out = dict(load_file(str(path)))
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8:8 + n]).get("__metadata__", {})
    if "embeddings" not in out or "labels" not in out:
        raise ArtifactError(f"{path}: not an embeddings export (needs `embeddings` and `labels`)")
    out["ids"] = json.loads(meta.get("ids", "[]"))
    out["classes"] = json.loads(meta.get("classes", "[]"))
    out["normalized"] = meta.get("normalized") == "true"
    return out
