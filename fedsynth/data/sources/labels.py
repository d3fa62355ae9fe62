"""Diagnosis labels from user data: class indices plus class names.

- Integer labels (numbers, or strings of digits) are class indices. With declared class names
  (``data.class_names``) they must lie in [0, len(class_names)); without, they must be >= 0 and
  the classes are "0" .. str(max).
- Other strings are class names. With declared class names each must be one of them (label =
  its position); without, the classes are the sorted distinct strings.

At least two classes are required. Every problem names the row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from fedsynth.data.sources.clinical import MISSING_TOKENS
from fedsynth.errors import DataError

_INTEGER = re.compile(r"[+-]?\d+")


def encode_labels(
    raw: Sequence[object] | np.ndarray,
    locate: Callable[[int], str],
    declared: tuple[str, ...],
    source: str,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Return int64 labels and the class names. ``locate(i)`` names record i in messages."""
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind in "iub":
            return _from_indices(raw.astype(np.int64), locate, declared, source)
        if raw.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(raw) | (raw != np.round(raw)))
            if bad.size:
                i = int(bad[0])
                raise DataError(locate(i), f"label {raw[i]!r} is not an integer", "an integer class index")
            return _from_indices(raw.astype(np.int64), locate, declared, source)
        raw = [str(v) for v in raw.tolist()]
    cells = [str(v).strip() for v in raw]
    for i, cell in enumerate(cells):
        if cell.lower() in MISSING_TOKENS:
            raise DataError(locate(i), f"missing label {cell!r}", "a class label in every row")
    if all(_INTEGER.fullmatch(c) for c in cells):
        return _from_indices(np.array([int(c) for c in cells], dtype=np.int64), locate, declared, source)
    names = declared or tuple(sorted(set(cells)))
    index = {name: k for k, name in enumerate(names)}
    labels = np.empty(len(cells), dtype=np.int64)
    for i, cell in enumerate(cells):
        if cell not in index:
            raise DataError(locate(i), f"unknown class {cell!r}", f"one of {list(names)} (data.class_names)")
        labels[i] = index[cell]
    return labels, _at_least_two(names, source)


def _from_indices(
    labels: np.ndarray, locate: Callable[[int], str], declared: tuple[str, ...], source: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    if labels.size == 0:
        raise DataError(source, "no labels", "at least one record")
    if declared:
        bad = np.flatnonzero((labels < 0) | (labels >= len(declared)))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                locate(i),
                f"label {int(labels[i])} out of range",
                f"a class index in [0, {len(declared) - 1}] for data.class_names {list(declared)}",
            )
        return labels, _at_least_two(declared, source)
    bad = np.flatnonzero(labels < 0)
    if bad.size:
        i = int(bad[0])
        raise DataError(locate(i), f"label {int(labels[i])} out of range", "a class index >= 0")
    names = tuple(str(k) for k in range(int(labels.max()) + 1))
    return labels, _at_least_two(names, source)


def _at_least_two(names: tuple[str, ...], source: str) -> tuple[str, ...]:
    if len(names) < 2:
        raise DataError(source, f"a single class {list(names)}", "labels of at least 2 classes")
    return names
