"""The ``dataset`` artifact of ``ingest`` and ``augment`` (Rust:
``stages/src/data/dataset.rs``; layout in ``docs/artifacts.md``).

A folder with ``dataset.json``, ``items.bin`` (24-byte little-endian
records: label u32, shard u32, offset u64, length u32, frames u32),
``ids.txt`` (one id per line), ``shards/shard-NNNNN.bin`` (item bytes back
to back, a new shard once one holds 64 MiB), optionally ``trials.txt``
(``label i j`` lines) and, in a split's folder, ``split.bin`` (u32 item
indices).

:func:`read_dataset` accepts what tuneflow's ``DatasetReader`` accepts,
except that it also refuses, with an :class:`ArtifactError`, what tuneflow
would crash on or misread later (trailing bytes in ``items.bin`` or
``split.bin``, split indices past the end, a bad ``trials.txt``).
:meth:`Dataset.validate` checks every item against the header.
:func:`write_dataset` writes the same bytes tuneflow's writer does.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from ._common import (ArtifactError, U32_MAX, check_id, check_str, check_str_list,
                      check_uint, dump_json, fail, read_json, require, write_bytes)
from .trials import format_trials, parse_trials, rust_lines

#: A new shard starts once the current one holds this many bytes.
SHARD_BYTES = 64 << 20
#: ``items.bin`` record: label, shard, offset, length, frames (little-endian).
RECORD = np.dtype([("label", "<u4"), ("shard", "<u4"), ("offset", "<u8"),
                   ("length", "<u4"), ("frames", "<u4")])
#: Item dtype per ``dtype`` string.
DTYPES = {"u8": np.dtype("u1"), "f32": np.dtype("<f4"), "i16": np.dtype("<i2")}
#: What each kind may hold: image (u8 from ingest, f32 from ``augment
#: copies``), fbank (f32 frames x bins), waveform (i16 samples, from
#: ``keep-waveform``).
KIND_DTYPES = {"image": ("u8", "f32"), "fbank": ("f32",), "waveform": ("i16",)}


@dataclass
class DatasetInfo:
    """``dataset.json``. Field names are the Python spelling of the JSON
    keys (``format-version`` -> ``format_version``)."""
    kind: str
    dtype: str
    shape: List[int]
    classes: List[str]
    items: int = 0
    splits: Dict[str, int] = field(default_factory=dict)
    split: Optional[str] = None
    skipped: int = 0
    skipped_examples: List[str] = field(default_factory=list)
    trials: int = 0
    format_version: int = 1

    def to_json(self) -> dict:
        """The JSON object, keys in tuneflow's order."""
        return {"format-version": self.format_version, "kind": self.kind,
                "dtype": self.dtype, "shape": list(self.shape),
                "classes": list(self.classes), "items": self.items,
                "splits": dict(sorted(self.splits.items())), "split": self.split,
                "skipped": self.skipped, "skipped-examples": list(self.skipped_examples),
                "trials": self.trials}

    @classmethod
    def from_json(cls, obj: Any, where: str = "dataset.json") -> "DatasetInfo":
        """Checks fields as serde does: required keys and their types;
        ``split`` and ``trials`` may be absent; unknown keys are ignored.
        ``format-version`` is not checked against anything (tuneflow does
        not check it either)."""
        require(where, obj, ["format-version", "kind", "dtype", "shape", "classes", "items",
                             "splits", "skipped", "skipped-examples"])
        splits = obj["splits"]
        if not isinstance(splits, dict):
            fail(where, "`splits` must be an object of split name -> size")
        split = obj.get("split")
        if split is not None:
            check_str(where, "split", split)
        shape = obj["shape"]
        if not isinstance(shape, list):
            fail(where, "`shape` must be a list of integers")
        return cls(
            format_version=check_uint(where, "format-version", obj["format-version"], U32_MAX),
            kind=check_str(where, "kind", obj["kind"]),
            dtype=check_str(where, "dtype", obj["dtype"]),
            shape=[check_uint(where, f"shape[{i}]", s, U32_MAX) for i, s in enumerate(shape)],
            classes=check_str_list(where, "classes", obj["classes"]),
            items=check_uint(where, "items", obj["items"]),
            splits={k: check_uint(where, f"splits.{k}", v) for k, v in splits.items()},
            split=split,
            skipped=check_uint(where, "skipped", obj["skipped"]),
            skipped_examples=check_str_list(where, "skipped-examples", obj["skipped-examples"]),
            trials=check_uint(where, "trials", obj.get("trials", 0)))


@dataclass
class Item:
    """One item: its index in the whole dataset, id, label, frames (1 for
    images, samples for waveforms) and values (``C x H x W`` for images,
    ``frames x bins`` for fbank, ``samples`` for waveforms)."""
    index: int
    id: str
    label: int
    frames: int
    data: np.ndarray


class Dataset:
    """A dataset artifact read from a folder. ``len()`` and iteration cover
    this output's split (every item for the whole dataset)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        where = str(self.path)
        info_path = self.path / "dataset.json"
        if not info_path.is_file():
            fail(where, "the dataset has no `dataset.json`")
        self.info = DatasetInfo.from_json(read_json(info_path), str(info_path))
        raw = self._file("items.bin")
        if len(raw) % RECORD.itemsize:
            fail(where, f"items.bin holds {len(raw)} bytes, not a multiple of {RECORD.itemsize}")
        self.records = np.frombuffer(raw, dtype=RECORD)
        n = len(self.records)
        split = self.path / "split.bin"
        if split.exists():
            raw = split.read_bytes()
            if len(raw) % 4:
                fail(where, f"split.bin holds {len(raw)} bytes, not a multiple of 4")
            self.indices = np.frombuffer(raw, dtype="<u4")
            if len(self.indices) and int(self.indices.max()) >= n:
                fail(where, f"split.bin names item {int(self.indices.max())}, but there are {n}")
        else:
            self.indices = np.arange(n, dtype="<u4")
        shards = int(self.records["shard"].max()) + 1 if n else 0
        self.shards = [self.path / "shards" / f"shard-{s:05}.bin" for s in range(shards)]
        for s, p in enumerate(self.shards):
            if not p.is_file():
                fail(where, f"the dataset has no shard {s} (`shards/{p.name}`)")
        ids = self.path / "ids.txt"
        # As extract reads it: lines; a missing file or line is an empty id.
        self.ids = rust_lines(ids.read_text("utf-8")) if ids.exists() else []
        t = self.path / "trials.txt"
        self.trials = parse_trials(t.read_text("utf-8"), str(t)) if t.exists() else None

    def _file(self, rel: str) -> bytes:
        p = self.path / rel
        if not p.is_file():
            fail(str(self.path), f"the dataset has no `{rel}`")
        return p.read_bytes()

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return (self.item(i) for i in range(len(self)))

    def __getitem__(self, i: int) -> Item:
        return self.item(i)

    @property
    def labels(self) -> np.ndarray:
        """The label of each item of the split."""
        return self.records["label"][self.indices].astype(np.int64)

    def id_of(self, index: int) -> str:
        """The id of dataset item ``index`` (empty when ids.txt lacks it)."""
        return self.ids[index] if index < len(self.ids) else ""

    def raw(self, i: int) -> bytes:
        """The stored bytes of the split's ``i``-th item."""
        return self._raw(int(self.indices[i]))

    def _raw(self, index: int) -> bytes:
        r = self.records[index]
        with open(self.shards[int(r["shard"])], "rb") as f:
            f.seek(int(r["offset"]))
            data = f.read(int(r["length"]))
        if len(data) != int(r["length"]):
            fail(str(self.path), f"item {index} lies past the end of its shard")
        return data

    def item(self, i: int) -> Item:
        """The split's ``i``-th item, decoded by the header's kind, dtype and
        shape (a length that does not fit them is an ArtifactError)."""
        return self.item_at(int(self.indices[i]))

    def item_at(self, index: int) -> Item:
        """Item ``index`` of the whole dataset, decoded."""
        r = self.records[index]
        info, where = self.info, f"{self.path}: item {index}"
        dt = DTYPES.get(info.dtype)
        if dt is None:
            fail(where, f"unknown dtype `{info.dtype}` (u8, f32 or i16)")
        if int(r["length"]) % dt.itemsize:
            fail(where, f"{int(r['length'])} bytes is not a whole number of {info.dtype} values")
        flat = np.frombuffer(self._raw(index), dtype=dt)
        if info.kind == "image":
            if len(info.shape) != 3 or flat.size != int(np.prod(info.shape)):
                fail(where, f"{flat.size} values do not make an image of shape {info.shape}")
            data = flat.reshape(info.shape)
        elif info.kind == "waveform":
            data = flat
        else:
            bins = info.shape[0] if info.shape else 0
            if bins == 0 or flat.size % bins:
                fail(where, f"{flat.size} values are not whole frames of {bins} bins")
            data = flat.reshape(-1, bins)
        return Item(index, self.id_of(index), int(r["label"]), int(r["frames"]), data)

    def validate(self) -> None:
        """The checks tuneflow leaves to the moment an item is used (or never
        makes): the header against the records, every item's size and
        frames, labels, ids, the split and the trials. Raises ArtifactError
        on the first problem. Every artifact tuneflow writes passes."""
        info, where = self.info, str(self.path)
        _check_header(info, where)
        n = len(self.records)
        if info.items != n:
            fail(where, f"dataset.json says {info.items} items, items.bin holds {n}")
        if info.split is not None and info.splits.get(info.split) != len(self.indices):
            fail(where, f"split `{info.split}` has {len(self.indices)} items, dataset.json says {info.splits.get(info.split)}")
        if n and int(self.records["label"].max()) >= len(info.classes):
            fail(where, f"a label is {int(self.records['label'].max())}, but there are {len(info.classes)} classes")
        if len(self.ids) != n:
            fail(where, f"ids.txt has {len(self.ids)} lines for {n} items")
        for index in range(n):
            it = self.item_at(index)
            frames = 1 if info.kind == "image" else len(it.data)
            if it.frames != frames:
                fail(where, f"item {index}: `frames` is {it.frames}, but it holds {frames}")
        if self.trials is not None and len(self.trials) and int(self.trials[:, 1:].max()) >= n:
            fail(where, "trials.txt names an item past the end")


def read_dataset(path: Union[str, os.PathLike]) -> Dataset:
    """Opens a dataset artifact folder (whole dataset or one split)."""
    return Dataset(Path(path))


def _check_header(info: DatasetInfo, where: str) -> None:
    if info.kind not in KIND_DTYPES:
        fail(where, f"`kind` must be one of {', '.join(KIND_DTYPES)}, not `{info.kind}`")
    if info.dtype not in KIND_DTYPES[info.kind]:
        fail(where, f"`dtype` of {info.kind} data must be {' or '.join(KIND_DTYPES[info.kind])}, not `{info.dtype}`")
    want = {"image": 3, "fbank": 1, "waveform": 1}[info.kind]
    if len(info.shape) != want or 0 in info.shape:
        fail(where, f"`shape` of {info.kind} data must be {want} positive integer(s), not {info.shape}")
    if info.kind == "waveform" and info.shape != [1]:
        fail(where, "`shape` of waveform data must be [1]")


def _check_target(path: Path, where: str) -> None:
    """The folder to write must be new or empty; its parent is created."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        fail(where, "the target exists and is not an empty folder")
    path.parent.mkdir(parents=True, exist_ok=True)


ItemLike = Union[Item, Sequence[Any]]


def _unpack(x: ItemLike):
    if isinstance(x, Item):
        return x.id, x.label, x.data
    if len(x) != 3:
        raise ArtifactError("an item must be an Item or an (id, label, array) triple")
    return x


def write_dataset(path: Union[str, os.PathLike], items: Iterable[ItemLike], *, kind: str,
                  classes: Sequence[str], splits: Optional[Mapping[str, Union[Sequence[int], int]]] = None,
                  split: Optional[str] = None, trials: Optional[Sequence[Sequence[int]]] = None,
                  skipped: int = 0, skipped_examples: Sequence[str] = (),
                  format_version: int = 1) -> Path:
    """Writes one dataset folder that tuneflow reads (a new or empty folder).

    ``items``: :class:`Item` objects or ``(id, label, array)`` triples,
    streamed into 64 MiB shards. Arrays: ``kind="image"``: ``C x H x W``
    uint8 (or float32, as ``augment copies`` writes); ``"fbank"``:
    ``frames x bins`` float32; ``"waveform"``: int16 samples. ``splits``:
    split name -> dataset indices (or only a size, to record it in
    ``dataset.json``); ``split``: write that split's folder (with
    ``split.bin``) instead of the whole dataset. ``trials``: ``(label, i,
    j)`` rows, written to ``trials.txt``. Raises ArtifactError naming the
    item or field at fault, and leaves nothing at ``path`` then.
    """
    path = Path(path)
    where = f"write_dataset({path})"
    classes = check_str_list(where, "classes", list(classes))
    if kind not in KIND_DTYPES:
        fail(where, f"`kind` must be one of {', '.join(KIND_DTYPES)}, not {kind!r}")
    _check_target(path, where)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        info = _write_items(tmp, items, kind, classes, where)
        info.format_version = check_uint(where, "format_version", format_version, U32_MAX)
        info.skipped = check_uint(where, "skipped", skipped)
        info.skipped_examples = check_str_list(where, "skipped_examples", list(skipped_examples))
        sizes, chosen = {}, None
        for name, v in (splits or {}).items():
            check_str(where, "splits", name)
            if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                sizes[name] = check_uint(where, f"splits[{name!r}]", int(v))
                continue
            idx = np.asarray(v)
            if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
                fail(where, f"split `{name}` must be a list of item indices (or a size)")
            idx = idx.astype(np.int64)
            if len(idx) and (idx.min() < 0 or idx.max() >= info.items):
                fail(where, f"split `{name}` names an item outside 0..{info.items}")
            sizes[name] = len(idx)
            chosen = idx if name == split else chosen
        if split is not None and chosen is None:
            fail(where, f"`split` {split!r} needs its indices in `splits`")
        info.splits, info.split = sizes, split
        if trials is not None and len(trials):
            write_bytes(tmp / "trials.txt", format_trials(trials, info.items, f"{where}: trials"))
            info.trials = len(trials)
        if chosen is not None:
            write_bytes(tmp / "split.bin", chosen.astype("<u4").tobytes())
        write_bytes(tmp / "dataset.json", dump_json(info.to_json()))
        if path.is_dir():
            path.rmdir()  # empty: checked above
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _write_items(dir: Path, items: Iterable[ItemLike], kind: str, classes: List[str], where: str) -> DatasetInfo:
    (dir / "shards").mkdir(parents=True)
    records, shard, shard_no, shard_len, shape, dtype = [], None, 0, 0, None, None
    with open(dir / "ids.txt", "w", encoding="utf-8", newline="\n") as ids:
        try:
            for n, x in enumerate(items):
                id_, label, arr = _unpack(x)
                at = f"{where}: item {n}"
                label = int(label) if isinstance(label, np.integer) else label
                check_id(at, "id", id_)
                check_uint(at, "label", label, U32_MAX)
                if label >= len(classes):
                    fail(at, f"`label` {label} is not below the {len(classes)} classes")
                arr = np.asarray(arr)
                if arr.dtype.byteorder == ">":
                    arr = arr.astype(arr.dtype.newbyteorder("<"))
                dtype, shape, frames = _item_layout(at, kind, arr, dtype, shape)
                data = arr.astype(DTYPES[dtype], copy=False).tobytes()
                if len(data) > U32_MAX:
                    fail(at, f"{len(data)} bytes do not fit the record's u32 length")
                if shard is None or shard_len >= SHARD_BYTES:
                    if shard is not None:
                        shard.close()
                        shard_no += 1
                    shard = open(dir / "shards" / f"shard-{shard_no:05}.bin", "wb")
                    shard_len = 0
                shard.write(data)
                records.append((label, shard_no, shard_len, len(data), frames))
                shard_len += len(data)
                ids.write(id_ + "\n")
        finally:
            if shard is not None:
                shard.close()
    if not records:
        fail(where, "no items (tuneflow's ingest refuses an empty dataset)")
    write_bytes(dir / "items.bin", np.array(records, dtype=RECORD).tobytes())
    return DatasetInfo(kind=kind, dtype=dtype, shape=shape, classes=classes, items=len(records))


def _item_layout(at: str, kind: str, arr: np.ndarray, dtype, shape):
    """(dtype string, header shape, frames) of one item; every item must
    agree with the first."""
    if kind == "image":
        ok = {np.dtype("u1"): "u8", np.dtype("<f4"): "f32"}
        if arr.ndim != 3 or arr.dtype not in ok:
            fail(at, f"an image must be a C x H x W uint8 or float32 array, not {arr.dtype} {arr.shape}")
        got, item_shape, frames = ok[arr.dtype], list(arr.shape), 1
    elif kind == "fbank":
        if arr.ndim != 2 or arr.dtype != np.float32:
            fail(at, f"fbank features must be a frames x bins float32 array, not {arr.dtype} {arr.shape}")
        got, item_shape, frames = "f32", [arr.shape[1]], arr.shape[0]
    else:
        if arr.ndim != 1 or arr.dtype != np.int16:
            fail(at, f"a waveform must be a 1-d int16 array, not {arr.dtype} {arr.shape}")
        got, item_shape, frames = "i16", [1], arr.shape[0]
    if 0 in item_shape or any(s > U32_MAX for s in item_shape) or frames > U32_MAX:
        fail(at, f"shape {list(arr.shape)} is empty or too large")
    if shape is not None and (item_shape != shape or got != dtype):
        fail(at, f"{got} {item_shape} differs from the first item's {dtype} {shape}")
    return got, item_shape, frames


def write_dataset_splits(path: Union[str, os.PathLike], items: Iterable[ItemLike], *, kind: str,
                         classes: Sequence[str], splits: Mapping[str, Sequence[int]],
                         **kw) -> Dict[str, Path]:
    """Writes the whole dataset at ``path`` and each split beside it as
    ``<path>-<name>``, as ``ingest`` lays out its outputs (shards are hard
    links where possible). Returns ``{"dataset": path, name: path, ...}``."""
    path = Path(path)
    for name, v in splits.items():
        if isinstance(v, (int, np.integer)):
            fail(f"write_dataset_splits({path})", f"split `{name}` needs its item indices, not a size")
        _check_target(path.with_name(f"{path.name}-{name}"), f"write_dataset_splits({path})")
    write_dataset(path, items, kind=kind, classes=classes, splits=splits, **kw)
    base = read_dataset(path)
    out = {"dataset": path}
    for name in splits:
        d = path.with_name(f"{path.name}-{name}")
        d.mkdir(exist_ok=True)
        for src in path.rglob("*"):
            dst = d / src.relative_to(path)
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            elif src.name != "dataset.json":
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
        info = DatasetInfo(**{**base.info.__dict__, "split": name})
        write_bytes(d / "split.bin", np.asarray(splits[name], dtype="<u4").tobytes())
        write_bytes(d / "dataset.json", dump_json(info.to_json()))
        out[name] = d
    return out
