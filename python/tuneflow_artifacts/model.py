"""The ``model`` artifact of ``pretrain``, ``fine-tune`` and ``freeze``
(Rust: ``stages/src/formats/model.rs``, ``torch/src/model.rs``,
``torch/src/heads.rs``, ``torch/src/train.rs``).

A folder with ``model.safetensors`` (every variable, F32, sorted by name,
no ``__metadata__``), ``config.json`` (pretty JSON, keys sorted),
``metrics.json`` (the training history) and, from ``freeze``,
``freeze.json``. tuneflow needs ``config.json`` and ``model.safetensors``;
``metrics.json`` only when an ``evaluate`` stage draws its curves.

:func:`architecture` gives every tensor name and shape the network of a
config has, as ``extract`` builds it; :func:`read_model` and
:func:`write_model` check the weights against it.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from ._common import (ArtifactError, U32_MAX, check_bool, check_float, check_int,
                      check_str, check_str_list, check_uint, check_uint_list, dump_json,
                      fail, read_json, require, write_bytes)

#: Blocks per layer and whether they are bottlenecks, per depth.
DEPTHS = {10: ([1, 1, 1, 1], False), 18: ([2, 2, 2, 2], False),
          34: ([3, 4, 6, 3], False), 50: ([3, 4, 6, 3], True)}
MODEL_DEFAULTS = {"arch": "resnet", "width": 64, "embedding": 512, "in-channels": 3,
                  "stem-stride": 1, "pooling": "avg"}
LOSS_FIELDS = ("kind", "scale", "margin", "easy-margin", "label-smoothing", "per-class")
SOFTMAX = {"kind": "softmax", "scale": 1.0, "margin": 0.0, "easy-margin": False,
           "label-smoothing": 0.0, "per-class": 4}
LOSSES = ("softmax", "arcface", "cosface", "triplet")
#: Augmentation ops: field -> (type, default or REQUIRED).
REQUIRED = object()
OPS = {"flip": {"p": ("f64", 0.5)}, "random-crop": {"padding": ("u32", REQUIRED)},
       "rotate": {"degrees": ("f64", REQUIRED)},
       "color-jitter": {"brightness": ("f64", REQUIRED), "contrast": ("f64", REQUIRED)},
       "normalize": {"mean": ("f64s", REQUIRED), "std": ("f64s", REQUIRED)},
       "segment-crop": {"frames": ("u32", REQUIRED)},
       "spec-augment": {"freq": ("u32", REQUIRED), "time": ("u32", REQUIRED)},
       "noise": {"snr": ("f64", REQUIRED)}}
BN = ("bias", "running_mean", "running_var", "weight")


def check_op(op: Any, where: str) -> dict:
    """One augmentation op as serde reads it (``{"op": kind, ...}``, unknown
    fields refused; ``normalize`` takes a number or a list); returns it
    with defaults filled and numbers as lists, as tuneflow writes it."""
    if not isinstance(op, Mapping) or not isinstance(op.get("op"), str):
        fail(where, "an op must be an object with an `op` name")
    kind = op["op"]
    if kind not in OPS:
        fail(where, f"unknown op `{kind}` (one of {', '.join(OPS)})")
    out = {"op": kind}
    for k in op:
        if k != "op" and k not in OPS[kind]:
            fail(where, f"op `{kind}` has no field `{k}`")
    for k, (t, default) in OPS[kind].items():
        if k not in op:
            if default is REQUIRED:
                fail(where, f"op `{kind}` needs `{k}`")
            out[k] = default
            continue
        v = op[k]
        if t == "u32":
            out[k] = check_uint(where, f"{kind}.{k}", v, U32_MAX)
        elif t == "f64":
            out[k] = check_float(where, f"{kind}.{k}", v)
        else:
            vals = v if isinstance(v, list) else [v]
            out[k] = [check_float(where, f"{kind}.{k}", x) for x in vals]
    return out


def check_config(config: Any, where: str = "config.json", level: str = "serde") -> dict:
    """``config.json`` with every default filled in, checked as tuneflow's
    serde types check it (``level="serde"``). ``"worker"`` adds what the
    worker needs to build the network (arch ``resnet``, depth 10/18/34/50,
    a ``data-shape``); ``"write"`` adds what tuneflow's own training always
    writes (kind ``image`` with ``[C, H, W]`` and average pooling, or
    ``fbank`` with ``[bins]`` and statistics pooling; in-channels as the
    data has them; a known loss kind)."""
    require(where, config, ["model", "classes", "data-kind", "data-shape"])
    m = config["model"]
    require(f"{where}: model", m, ["depth"])
    for k in m:
        if k not in MODEL_DEFAULTS and k != "depth":
            fail(where, f"`model` has an unknown field `{k}`")
    model = {**MODEL_DEFAULTS, **m}
    check_uint(where, "model.depth", model["depth"], U32_MAX)
    for k in ("width", "embedding", "in-channels", "stem-stride"):
        check_int(where, f"model.{k}", model[k])
    check_str(where, "model.arch", model["arch"])
    check_str(where, "model.pooling", model["pooling"])
    loss = config.get("loss", SOFTMAX)
    require(f"{where}: loss", loss, LOSS_FIELDS)
    loss = {k: loss[k] for k in LOSS_FIELDS}
    check_str(where, "loss.kind", loss["kind"])
    for k in ("scale", "margin", "label-smoothing"):
        loss[k] = check_float(where, f"loss.{k}", loss[k])
    check_bool(where, "loss.easy-margin", loss["easy-margin"])
    check_uint(where, "loss.per-class", loss["per-class"])
    out = {k: v for k, v in config.items()}  # unknown top-level keys are kept (serde ignores them)
    out.update(model=model, loss=loss,
               classes=check_str_list(where, "classes", config["classes"]),
               **{"data-kind": check_str(where, "data-kind", config["data-kind"]),
                  "data-shape": check_uint_list(where, "data-shape", config["data-shape"]),
                  "eval-ops": [check_op(o, f"{where}: eval-ops[{i}]")
                               for i, o in enumerate(_list(where, "eval-ops", config.get("eval-ops", [])))],
                  "source": check_str(where, "source", config.get("source", "")),
                  "frozen": check_str_list(where, "frozen", config.get("frozen", []))})
    if level in ("worker", "write"):
        _check_buildable(out, where, level == "write")
    return out


def _list(where: str, field: str, v: Any) -> list:
    if not isinstance(v, list):
        fail(where, f"`{field}` must be a list")
    return v


def _check_buildable(c: dict, where: str, write: bool) -> None:
    m, kind, shape = c["model"], c["data-kind"], c["data-shape"]
    if m["arch"] != "resnet":
        fail(where, f"`model.arch` must be `resnet`, not `{m['arch']}`")
    if m["depth"] not in DEPTHS:
        fail(where, f"`model.depth` {m['depth']} is not supported (10, 18, 34 or 50)")
    if not shape:
        fail(where, "`data-shape` is empty (extract compares its first value with the data's)")
    if not write:
        return
    for k in ("width", "embedding", "stem-stride"):
        if m[k] < 1:
            fail(where, f"`model.{k}` must be at least 1")
    if kind not in ("image", "fbank"):
        fail(where, f"`data-kind` must be `image` or `fbank`, not `{kind}`")
    want = (3, "avg", shape[0] if shape else 0) if kind == "image" else (1, "stats", 1)
    if len(shape) != want[0] or 0 in shape:
        fail(where, f"`data-shape` of {kind} data must be {want[0]} positive integer(s), not {shape}")
    if m["pooling"] != want[1]:
        fail(where, f"`model.pooling` must be `{want[1]}` for {kind} data, not `{m['pooling']}`")
    if m["in-channels"] != want[2]:
        fail(where, f"`model.in-channels` must be {want[2]} for this data, not {m['in-channels']}")
    if c["loss"]["kind"] not in LOSSES:
        fail(where, f"`loss.kind` must be one of {', '.join(LOSSES)}, not `{c['loss']['kind']}`")


def check_freeze(freeze: Any, where: str = "freeze.json") -> dict:
    """``freeze.json``: ``{"policy": {"freeze"|"trainable": [prefixes]},
    "frozen": [tensor names]}`` (the policy is one-key, as serde writes an
    enum)."""
    require(where, freeze, ["policy", "frozen"])
    p = freeze["policy"]
    if not isinstance(p, Mapping) or len(p) != 1 or next(iter(p)) not in ("freeze", "trainable"):
        fail(where, "`policy` must be {\"freeze\": [...]} or {\"trainable\": [...]}")
    key = next(iter(p))
    return {"policy": {key: check_str_list(where, f"policy.{key}", p[key])},
            "frozen": check_str_list(where, "frozen", freeze["frozen"])}


def resolve(config: dict, data_kind: Optional[str] = None, data_shape: Optional[List[int]] = None) -> dict:
    """The network ``extract`` builds for ``config`` on data of this kind
    and shape (default: the config's own ``data-kind`` and ``data-shape``):
    input channels from the data (1 for any non-image data), statistics
    pooling for non-image data (else only when the config says ``stats``),
    frequency bins from the data. Keys: depth, width, embedding,
    in_channels, stem_stride, stats, bins, loss, classes."""
    m = config["model"]
    kind = config["data-kind"] if data_kind is None else data_kind
    shape = config["data-shape"] if data_shape is None else data_shape
    audio = kind != "image"
    return {"depth": m["depth"], "width": m["width"], "embedding": m["embedding"],
            "in_channels": 1 if audio else shape[0], "stem_stride": m["stem-stride"],
            "stats": audio or m["pooling"] == "stats", "bins": shape[0] if audio else 0,
            "loss": config["loss"]["kind"], "classes": max(len(config["classes"]), 1)}


def architecture(config: dict, data_kind: Optional[str] = None,
                 data_shape: Optional[List[int]] = None) -> Dict[str, Tuple[int, ...]]:
    """Every tensor of the network (``backbone.*`` and ``head.*``) with its
    shape, sorted by name, as ``torch/src/model.rs`` and ``heads.rs`` name
    them. ``config`` is a :func:`check_config` result."""
    r = resolve(config, data_kind, data_shape)
    if r["depth"] not in DEPTHS:
        raise ArtifactError(f"ResNet depth {r['depth']} is not supported (10, 18, 34 or 50)")
    counts, bottleneck = DEPTHS[r["depth"]]
    w, s = r["width"], {}

    def bn(p: str, c: int) -> None:
        for k in BN:
            s[f"{p}.{k}"] = (c,)

    s["backbone.stem.conv.weight"] = (w, r["in_channels"], 3, 3)
    bn("backbone.stem.bn", w)
    cin = w
    for layer, n in enumerate(counts):
        cout = w << layer
        for b in range(n):
            p = f"backbone.layer{layer + 1}.{b}"
            stride = 2 if layer > 0 and b == 0 else 1
            convs = ([(cin, cout, 1), (cout, cout, 3), (cout, cout * 4, 1)] if bottleneck
                     else [(cin, cout, 3), (cout, cout, 3)])
            out = convs[-1][1]
            for i, (a, o, k) in enumerate(convs, 1):
                s[f"{p}.conv{i}.weight"] = (o, a, k, k)
                bn(f"{p}.bn{i}", o)
            if stride != 1 or cin != out:
                s[f"{p}.proj.weight"] = (out, cin, 1, 1)
                bn(f"{p}.proj_bn", out)
            cin = out
    pooled = cin
    if r["stats"]:
        f = (r["bins"] + r["stem_stride"] - 1) // r["stem_stride"]
        for _ in range(3):
            f = (f + 1) // 2
        pooled = 2 * cin * f
    s["backbone.embedding.fc.weight"] = (r["embedding"], pooled)
    s["backbone.embedding.fc.bias"] = (r["embedding"],)
    bn("backbone.embedding.bn", r["embedding"])
    if r["loss"] in ("arcface", "cosface"):
        s["head.weight"] = (r["classes"], r["embedding"])
    elif r["loss"] != "triplet":
        s["head.weight"] = (r["classes"], r["embedding"])
        s["head.bias"] = (r["classes"],)
    return dict(sorted(s.items()))


def check_tensors(tensors: Mapping[str, np.ndarray], config: dict, where: str) -> None:
    """The weights must be exactly the architecture's tensors, with its
    shapes (tuneflow's ``extract`` errs on an unknown name or shape, and
    refuses a missing, unexpected or misshaped tensor)."""
    want = architecture(config)
    missing = [k for k in want if k not in tensors]
    unexpected = [k for k in tensors if k not in want]
    if missing or unexpected:
        fail(where, f"the weights do not fit the model: {len(missing)} missing key(s) "
                    f"{missing[:8]}, {len(unexpected)} unexpected key(s) {unexpected[:8]}")
    for k, shape in want.items():
        if tuple(tensors[k].shape) != shape:
            fail(where, f"`{k}` has shape {list(tensors[k].shape)}, the model needs {list(shape)}")


@dataclass
class Model:
    """A model folder: ``tensors`` (name -> array, as stored: tuneflow
    writes float32), ``config``
    (``config.json`` as a dict), ``metrics`` (``metrics.json``) and
    ``freeze`` (``freeze.json``), the last two ``None`` when absent."""
    tensors: Dict[str, np.ndarray]
    config: dict
    metrics: Optional[dict] = None
    freeze: Optional[dict] = None


def read_model(path: Union[str, os.PathLike], check: bool = True) -> Model:
    """Reads a model folder. ``config.json`` and ``model.safetensors`` are
    required, ``freeze.json`` must parse when present. With ``check``
    (default), the config must be one the worker can build
    (``check_config(level="worker")``) and the weights must be exactly its
    tensors (:func:`check_tensors`)."""
    from safetensors.numpy import load_file
    path = Path(path)
    where = str(path)
    for f in ("config.json", "model.safetensors"):
        if not (path / f).is_file():
            fail(where, f"has no `{f}` (is it the `model` output of a training or freeze stage?)")
    config = read_json(path / "config.json")
    resolved = check_config(config, str(path / "config.json"), "worker" if check else "serde")
    try:
        tensors = dict(sorted(load_file(str(path / "model.safetensors")).items()))
    except Exception as e:  # safetensors raises its own error types
        raise ArtifactError(f"{path / 'model.safetensors'}: not a safetensors file: {e}") from None
    metrics = read_json(path / "metrics.json") if (path / "metrics.json").exists() else None
    freeze = None
    if (path / "freeze.json").exists():
        freeze = check_freeze(read_json(path / "freeze.json"), str(path / "freeze.json"))
    if check:
        check_tensors(tensors, resolved, str(path / "model.safetensors"))
    return Model(tensors, config, metrics, freeze)


def _sorted(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _sorted(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [_sorted(x) for x in v]
    return v


def write_model(path: Union[str, os.PathLike], tensors: Mapping[str, Any], config: Mapping[str, Any],
                metrics: Optional[Mapping[str, Any]] = None,
                freeze: Optional[Mapping[str, Any]] = None) -> Path:
    """Writes a model folder (new or empty) that tuneflow's ``extract``,
    ``freeze`` and ``fine-tune`` read. ``config`` is checked strictly
    (:func:`check_config`) and written with its defaults filled in;
    ``tensors`` must be exactly the architecture's, floating point (stored
    as F32). ``metrics`` defaults to an empty history; ``freeze`` may only
    name backbone tensors of the model. Raises ArtifactError."""
    from safetensors.numpy import save_file
    path = Path(path)
    where = f"write_model({path})"
    cfg = check_config(copy.deepcopy(dict(config)), f"{where}: config", "write")
    arrays = {}
    for k, v in tensors.items():
        a = np.asarray(v)
        if not isinstance(k, str) or a.dtype.kind != "f":
            fail(where, f"tensor `{k}` must be a floating-point array with a string name, not {a.dtype}")
        arrays[k] = np.ascontiguousarray(a, dtype=np.float32)
    check_tensors(arrays, cfg, where)
    if freeze is not None:
        freeze = check_freeze(freeze, f"{where}: freeze")
        bad = [n for n in freeze["frozen"] if n not in arrays or not n.startswith("backbone.")]
        if bad:
            fail(where, f"`freeze.frozen` names {bad[:8]}, which are not backbone tensors of the model")
    if metrics is None:
        metrics = {"best_epoch": None, "epochs": [], "stopped_early": False}
    if not isinstance(metrics, Mapping) or not isinstance(metrics.get("epochs", []), list):
        fail(where, "`metrics` must be an object whose `epochs` is a list")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        fail(where, "the target exists and is not an empty folder")
    path.mkdir(parents=True, exist_ok=True)
    save_file(dict(sorted(arrays.items())), str(path / "model.safetensors"))
    write_bytes(path / "config.json", dump_json(_sorted(cfg)))
    write_bytes(path / "metrics.json", dump_json(_sorted(dict(metrics))))
    if freeze is not None:
        write_bytes(path / "freeze.json", dump_json(freeze))
    return path
