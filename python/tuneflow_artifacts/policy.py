"""The ``policy`` output of ``augment`` (Rust:
``stages/src/formats/policy.rs``): one file, ``policy.json`` (pretty
JSON, fields in this order)::

    {"ops": [{"op": "random-crop", "padding": 2}, ...],
     "seed": 7,                      # the pipeline seed (i64)
     "stage": 15488346853436780866}  # a hash of the augment stage's name (u64)

The training loader seeds every random choice with (seed, stage, epoch,
item). Each op is ``{"op": name, fields...}`` with its fields in the
order the Rust enum declares them; ``normalize``'s ``mean`` and ``std`` are
always lists.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from ._common import U64_MAX, check_int, check_uint, dump_json, fail, read_json, require, write_bytes
from .model import check_op


def check_policy(policy: Any, where: str = "policy.json") -> dict:
    """The policy with every op checked and its defaults filled in
    (unknown top-level fields are ignored, as serde ignores them)."""
    require(where, policy, ["ops", "seed", "stage"])
    if not isinstance(policy["ops"], list):
        fail(where, "`ops` must be a list")
    return {"ops": [check_op(o, f"{where}: ops[{i}]") for i, o in enumerate(policy["ops"])],
            "seed": check_int(where, "seed", policy["seed"]),
            "stage": check_uint(where, "stage", policy["stage"], U64_MAX)}


def read_policy(path: Union[str, os.PathLike]) -> dict:
    """Reads ``policy.json`` (the file, or a folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "policy.json"
    return check_policy(read_json(path), str(path))


def write_policy(path: Union[str, os.PathLike], ops: Sequence[Mapping[str, Any]], seed: int, stage: int) -> Path:
    """Writes ``policy.json`` as ``augment`` does. ``stage`` is the hash of
    the stage name that tuneflow computed (this package does not compute
    it)."""
    path = Path(path)
    policy = check_policy({"ops": list(ops), "seed": seed, "stage": stage}, f"write_policy({path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, dump_json(policy))
    return path
