"""The ``metrics`` and ``plots`` outputs of ``evaluate`` (Rust:
``stages/src/kinds/evaluate.rs``, ``stages/src/eval/plots.rs``).

``metrics`` is one file, ``metrics.json`` (pretty JSON, keys sorted)::

    {"<label>": {"eer": 0.07, ...},            # the model's metrics
     "<baseline-label>": {...}, "diff": {...},  # with a baseline only
     "trials": {"count": 432, "positives": 216, "source": "file"},
     "columns": ["<label>", "<baseline-label>", "diff"]}

Metric values are numbers, or ``null`` for a non-finite value. ``plots``
is a folder of PNGs (720 x 540, 8-bit RGB): ``roc.png``, ``det.png`` and,
when the stage lists ``training`` stages, ``training.png``; it is empty
when no DejaVu Sans font was found.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple, Union

from ._common import (ArtifactError, check_str, check_str_list, check_uint, dump_json, fail,
                      is_int, read_json, write_bytes)

RESERVED = ("trials", "columns")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_group(where: str, key: str, v: Any) -> None:
    if v is None or isinstance(v, float) or is_int(v):
        return
    if isinstance(v, Mapping):
        for k, x in v.items():
            check_str(where, f"{key} key", k)
            _check_group(where, f"{key}.{k}", x)
        return
    fail(where, f"`{key}` must be a number, null, or an object of them, not {v!r}")


def check_metrics(report: Any, where: str = "metrics.json") -> dict:
    """A metrics report: a JSON object whose values are numbers (or null),
    or objects of them at any depth, as ``evaluate`` writes them per label;
    plus ``trials`` (``count``, ``positives``: integers, ``source``: a
    string) and ``columns`` (names of groups in the report), when given."""
    if not isinstance(report, Mapping):
        fail(where, f"must be a JSON object, not {type(report).__name__}")
    for k, v in report.items():
        check_str(where, "key", k)
        if k == "trials":
            if not isinstance(v, Mapping):
                fail(where, "`trials` must be an object")
            for f in ("count", "positives"):
                if f in v:
                    check_uint(where, f"trials.{f}", v[f])
            if "source" in v:
                check_str(where, "trials.source", v["source"])
        elif k == "columns":
            for c in check_str_list(where, "columns", v):
                if not isinstance(report.get(c), Mapping) or c in RESERVED:
                    fail(where, f"`columns` names `{c}`, which is not a group of metrics in the report")
        else:
            _check_group(where, k, v)
    return dict(report)


def read_metrics(path: Union[str, os.PathLike]) -> dict:
    """Reads ``metrics.json`` (the file, or a folder holding it) and checks
    it with :func:`check_metrics`."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    return check_metrics(read_json(path), str(path))


def _sorted(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _sorted(v[k]) for k in sorted(v)}
    if isinstance(v, (list, tuple)):
        return [_sorted(x) for x in v]
    return v


def write_metrics(path: Union[str, os.PathLike], report: Mapping[str, Any]) -> Path:
    """Writes a metrics report as ``evaluate`` does (pretty, keys sorted,
    non-finite numbers as null) after :func:`check_metrics`. ``path`` is the
    file; an existing folder gets ``metrics.json`` inside it."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    check_metrics(report, f"write_metrics({path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, dump_json(_sorted(report)))
    return path


def flatten_metrics(report: Mapping[str, Any]) -> Dict[str, float]:
    """``{"model": {"eer": ..}, "diff": {..}}`` -> ``{"model.eer": ..}``,
    as ``tuneflow metrics`` flattens a report: one level of groups,
    ``trials`` and ``columns`` left out, numbers only."""
    out = {}
    for group, v in report.items():
        if group in RESERVED or not isinstance(v, Mapping):
            continue
        for k, x in v.items():
            if is_int(x) or isinstance(x, float):
                out[f"{group}.{k}"] = float(x)
    return dict(sorted(out.items()))


@dataclass
class Plot:
    """One PNG of a ``plots`` folder."""
    name: str
    path: Path
    width: int
    height: int


def png_size(data: bytes, where: str) -> tuple:
    """(width, height) from a PNG's IHDR chunk; anything else is an error."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 24:
        fail(where, "is not a PNG file")
    return struct.unpack(">II", data[16:24])


def list_plots(path: Union[str, os.PathLike]) -> List[Plot]:
    """The plots in a ``plots`` folder, sorted by name. Every file must be
    a ``.png`` PNG (that is all ``evaluate`` writes); an empty folder is
    valid (no font was found)."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: not a folder (a `plots` output is a folder of PNGs)")
    out = []
    for p in sorted(path.iterdir()):
        if p.name == "curves.json" and p.is_file():
            continue  # the curves' operating points (read_curves)
        if not p.is_file() or p.suffix != ".png":
            fail(str(p), "a plots folder holds only .png files (and curves.json)")
        w, h = png_size(p.read_bytes()[:24], str(p))
        out.append(Plot(p.name, p, w, h))
    return out


def read_curves(path: Union[str, os.PathLike]) -> Dict[str, List[Tuple[float, float]]]:
    """The operating points ``evaluate`` keeps in a ``plots`` folder's
    ``curves.json``: label -> [(far, frr), ...] (empty when absent)."""
    f = Path(path) / "curves.json"
    if not f.is_file():
        return {}
    obj = json.loads(f.read_bytes())
    out = {}
    for c in obj.get("curves", []):
        pts = [(float(a), float(b)) for a, b in c["points"]]
        if not all(0.0 <= x <= 1.0 for p in pts for x in p):
            fail(str(f), "every point is [far, frr], rates in 0..1")
        out[str(c["label"])] = pts
    return out


def write_plots(path: Union[str, os.PathLike], plots: Mapping[str, Union[bytes, str, os.PathLike]]) -> List[Plot]:
    """Writes a ``plots`` folder (new or empty): name (``*.png``) -> PNG
    bytes or the path of a PNG file."""
    path = Path(path)
    where = f"write_plots({path})"
    data = {}
    for name, v in plots.items():
        if not isinstance(name, str) or not name.endswith(".png") or "/" in name or name.startswith("."):
            fail(where, f"plot name {name!r} must be a plain `*.png` file name")
        data[name] = v if isinstance(v, bytes) else Path(v).read_bytes()
        png_size(data[name][:24], f"{where}: {name}")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        fail(where, "the target exists and is not an empty folder")
    path.mkdir(parents=True, exist_ok=True)
    for name, b in data.items():
        write_bytes(path / name, b)
    return list_plots(path)
