"""Shared helpers: the error type, JSON as tuneflow writes it, and the
checks of JSON field types that mirror serde's.

tuneflow writes JSON with serde_json: ``to_vec_pretty`` (two-space indent,
no trailing newline) for ``dataset.json``, ``config.json``,
``metrics.json`` and ``freeze.json``; compact ``to_vec`` for an
embeddings artifact's ``items.json``. :func:`dump_json` reproduces both.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


class ArtifactError(ValueError):
    """A malformed artifact, or a value a writer refuses. The message names
    the file and the field."""


def fail(where: str, message: str) -> None:
    """Raises :class:`ArtifactError` with ``where: message``."""
    raise ArtifactError(f"{where}: {message}")


def read_json(path: Path) -> Any:
    """Parses a JSON file; a missing file or bad JSON is an ArtifactError."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing") from None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: bad JSON: {e}") from None


def dump_json(value: Any, pretty: bool = True) -> bytes:
    """JSON bytes formatted as serde_json formats them (pretty: 2-space
    indent; compact: no spaces), UTF-8, no trailing newline. Non-finite
    floats become ``null``, as serde_json's ``Value::from(f64)`` does, and
    floats are spelled as serde_json spells them (:func:`float_text`)."""
    return "".join(_encode(value, "\n" if pretty else "", "  " if pretty else "")).encode("utf-8")


def float_text(x: float) -> str:
    """A float as serde_json 1.0.154 (zmij) writes it: the shortest
    round-trip digits, fixed notation for decimal exponents -5..=15
    (``0.00001``, ``100.0``), else ``1.5e+16`` / ``1e-6``. Python's repr
    differs only in ``1e-05`` (exponent -5) and ``e-06`` (zero-padding)."""
    r = repr(float(x))
    if "e" not in r:
        return r
    mant, exp = r.split("e")
    e = int(exp)
    if e == -5:
        sign = "-" if mant.startswith("-") else ""
        return f"{sign}0.0000{mant.lstrip('-').replace('.', '')}"
    return f"{mant}e{'+' if e >= 0 else '-'}{abs(e)}"


def _encode(v: Any, nl: str, ind: str, depth: int = 0):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        yield "null"
    elif v is True or v is False:
        yield "true" if v else "false"
    elif isinstance(v, int):
        yield str(v)
    elif isinstance(v, float):
        yield float_text(v)
    elif isinstance(v, str):
        yield json.dumps(v, ensure_ascii=False)
    elif isinstance(v, (dict, list, tuple)):
        items = list(v.items()) if isinstance(v, dict) else list(v)
        open_, close = ("{", "}") if isinstance(v, dict) else ("[", "]")
        if not items:
            yield open_ + close
            return
        yield open_
        inner = nl + ind * (depth + 1)
        for i, item in enumerate(items):
            yield ("," if i else "") + inner
            if isinstance(v, dict):
                yield json.dumps(str(item[0]), ensure_ascii=False) + (": " if nl else ":")
                item = item[1]
            yield from _encode(item, nl, ind, depth + 1)
        yield nl + ind * depth + close
    else:
        raise TypeError(f"cannot write {type(v).__name__} as JSON")


def write_bytes(path: Path, data: bytes) -> None:
    """Writes a file through a temp file renamed into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ---- field checks, named after the serde types they mirror ----------------

def is_int(v: Any) -> bool:
    """An integer that is not a bool (JSON numbers like 3.0 are not ints to serde)."""
    return isinstance(v, int) and not isinstance(v, bool)


def check_uint(where: str, field: str, v: Any, top: int = U64_MAX) -> int:
    """serde's u32/u64/usize: a non-negative integer in range."""
    if not is_int(v) or v < 0 or v > top:
        fail(where, f"`{field}` must be an integer in 0..={top}, not {v!r}")
    return int(v)


def check_int(where: str, field: str, v: Any) -> int:
    """serde's i64."""
    if not is_int(v) or not I64_MIN <= v <= I64_MAX:
        fail(where, f"`{field}` must be a 64-bit integer, not {v!r}")
    return int(v)


def check_float(where: str, field: str, v: Any) -> float:
    """serde's f64: any JSON number (an integer too)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        fail(where, f"`{field}` must be a number, not {v!r}")
    return float(v)


def check_bool(where: str, field: str, v: Any) -> bool:
    if not isinstance(v, bool):
        fail(where, f"`{field}` must be true or false, not {v!r}")
    return v


def check_str(where: str, field: str, v: Any) -> str:
    if not isinstance(v, str):
        fail(where, f"`{field}` must be a string, not {v!r}")
    return v


def check_str_list(where: str, field: str, v: Any) -> list:
    if not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v):
        fail(where, f"`{field}` must be a list of strings")
    return list(v)


def check_uint_list(where: str, field: str, v: Any, top: int = U32_MAX) -> list:
    if not isinstance(v, (list, tuple)):
        fail(where, f"`{field}` must be a list of integers")
    for i, x in enumerate(v):
        check_uint(where, f"{field}[{i}]", x, top)
    return [int(x) for x in v]


def require(where: str, obj: Mapping, fields: Iterable[str]) -> None:
    """Every field serde requires (no default) must be present."""
    if not isinstance(obj, Mapping):
        fail(where, f"must be a JSON object, not {type(obj).__name__}")
    for f in fields:
        if f not in obj:
            fail(where, f"missing field `{f}`")


def check_id(where: str, field: str, s: Any) -> str:
    """An item id for a line-per-id file: a string with no line break."""
    check_str(where, field, s)
    if "\n" in s or "\r" in s:
        fail(where, f"`{field}` {s!r} contains a line break (one id per line)")
    return s
