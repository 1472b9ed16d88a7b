"""Trial lists (``trials.txt``: ``label i j`` per line, item indices in
the whole dataset) and line splitting as tuneflow's Rust code does it."""

from __future__ import annotations

import re
from typing import Any, List, Optional

import numpy as np

from ._common import U32_MAX, fail

_UINT = re.compile(r"^\+?[0-9]+$")


def rust_lines(text: str) -> List[str]:
    """Lines as Rust's ``str::lines`` gives them: split at ``\\n``, one
    trailing ``\\r`` dropped from each, no empty line after a final
    newline."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [l[:-1] if l.endswith("\r") else l for l in lines]


def parse_trials(text: str, where: str = "trials.txt") -> np.ndarray:
    """``label i j`` lines as ``evaluate`` parses them (whitespace-separated,
    the first three fields unsigned 32-bit integers, more fields ignored; a
    blank line is an error). Returns an int64 array of shape ``[n, 3]``."""
    rows = []
    for n, line in enumerate(rust_lines(text), 1):
        f = line.split()
        if len(f) < 3 or not all(_UINT.match(x) and int(x) <= U32_MAX for x in f[:3]):
            fail(where, f"line {n}: bad trial line {line!r} (expected `label i j`)")
        rows.append([int(x) for x in f[:3]])
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def format_trials(trials: Any, count: Optional[int], where: str = "trials") -> bytes:
    """``label i j`` lines as ``ingest`` writes them. Labels must be 0 or 1;
    indices are dataset indices, below ``count`` when it is given."""
    t = np.asarray(trials)
    if t.size == 0:
        t = np.zeros((0, 3), np.int64)
    if t.ndim != 2 or t.shape[1] != 3 or t.dtype.kind not in "iu":
        fail(where, f"trials must be integer (label, i, j) rows, not {t.dtype} {t.shape}")
    t = t.astype(np.int64)
    if ((t[:, 0] != 0) & (t[:, 0] != 1)).any():
        fail(where, "a trial's label must be 0 (different) or 1 (same)")
    if (t[:, 1:] < 0).any() or (t[:, 1:] > U32_MAX).any() or (count is not None and (t[:, 1:] >= count).any()):
        fail(where, f"a trial names an item index outside 0..{count}")
    return "".join(f"{a} {b} {c}\n" for a, b, c in t.tolist()).encode()
