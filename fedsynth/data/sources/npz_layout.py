"""Which arrays of an npz file hold the records: its layout, read from the array headers alone.

Two layouts: split arrays ``<split>_images`` / ``<split>_labels`` (optionally
``<split>_patient_ids``) for the splits train, val and test, or plain ``images`` / ``labels``.
A file holding both is refused (which one was meant cannot be told). Which splits are pooled:

- ``data.npz_splits`` empty (default): the train split is required; val and test are pooled when
  the file has any of their arrays. A file without train is refused, never silently replaced by
  its other splits.
- ``data.npz_splits`` set: exactly the listed splits, in that order; splits the file holds but
  the list leaves out are not used, and a note says so.

Every split used needs both its images and its labels, each with at least one record. Arrays the
layout does not use are named in a note. Shapes and dtypes come from the ``.npy`` headers inside
the archive, so a file's size is known (and guarded) before any array is read.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass

import numpy as np
from numpy.lib import format as npy_format

from fedsynth.data.config import NPZ_SPLITS
from fedsynth.errors import DataError

#: The arrays one split (or the plain layout) may hold.
SPLIT_ARRAYS = ("images", "labels", "patient_ids")


@dataclass(frozen=True)
class ArrayInfo:
    """Shape and dtype of one array of the archive, from its header."""

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True)
class Part:
    """One pooled split: key prefix ("train_", ..., or "" for the plain layout), first pooled row, size."""

    key: str
    start: int
    n: int


@dataclass(frozen=True)
class Layout:
    """The splits pooled, in order, and what the file holds besides."""

    parts: tuple[Part, ...]
    #: Keys read to build the records (images, labels, ids of the parts; the pooled ids).
    used: tuple[str, ...]
    #: Row offset of each split in a pooled ``patient_ids`` array (every split the file holds).
    pooled_offsets: dict[str, int]
    pooled_total: int
    notes: tuple[str, ...]

    @property
    def total(self) -> int:
        return sum(p.n for p in self.parts)


def read_headers(npz: np.lib.npyio.NpzFile, name: str) -> dict[str, ArrayInfo]:
    """Every array's shape and dtype, read from its header (the array itself only if the header
    cannot be parsed on its own). Object arrays are refused: they need pickle."""
    infos = {}
    for key in npz.files:
        try:
            with npz.zip.open(f"{key}.npy") as fp:
                version = npy_format.read_magic(fp)
                reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
                shape, _, dtype = reader(fp)
        except (KeyError, ValueError, OSError, zipfile.BadZipFile):
            try:
                arr = npz[key]
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
                raise DataError(f"{name}, array '{key}'", f"cannot be read: {exc}", "a NumPy array") from exc
            shape, dtype = arr.shape, arr.dtype
        if dtype.hasobject:
            raise DataError(f"{name}, array '{key}'", "object array (needs pickle)", "numeric or string arrays")
        infos[key] = ArrayInfo(key, tuple(int(s) for s in shape), dtype)
    return infos


def resolve_layout(infos: dict[str, ArrayInfo], name: str, splits: tuple[str, ...]) -> Layout:
    """The parts to pool and the keys to read; DataError naming the file and key when an expected
    split or array is missing or empty."""
    keys = set(infos)
    present = [s for s in NPZ_SPLITS if any(f"{s}_{a}" in keys for a in SPLIT_ARRAYS)]
    plain = [k for k in SPLIT_ARRAYS if k in keys and k != "patient_ids"]
    if plain and present:
        split_keys = sorted(k for k in keys if any(k == f"{s}_{a}" for s in present for a in SPLIT_ARRAYS))
        raise DataError(
            name,
            f"both plain arrays {[repr(k) for k in plain]} and split arrays {[repr(k) for k in split_keys]}",
            "one layout: train_images/train_labels (optionally val_*, test_*) or images/labels",
        )
    if not present:
        return _plain_layout(infos, name, splits)
    wanted = list(splits) if splits else present
    if not splits and "train" not in present:
        raise DataError(
            name,
            f"no train split (keys 'train_images' and 'train_labels' missing; the file has {sorted(keys)})",
            'a train split, or data.npz_splits naming the splits to use instead, e.g. ["val", "test"]',
        )
    for split in wanted:
        for array in ("images", "labels"):
            if f"{split}_{array}" not in keys:
                why = (
                    f"for split '{split}', which data.npz_splits lists"
                    if splits
                    else f"since the file has '{split}_' arrays; to use the file without split '{split}', list "
                    "the splits to use in data.npz_splits"
                )
                raise DataError(name, f"key '{split}_{array}' missing", f"both {split}_images and {split}_labels {why}")
    sizes = {s: _split_size(infos, s) for s in present}
    parts, start = [], 0
    for split in wanted:
        n = sizes[split]
        if n == 0:
            raise DataError(
                f"{name}, array '{split}_images'",
                "0 records",
                f"at least one record in every split used; leave '{split}' out with data.npz_splits",
            )
        parts.append(Part(f"{split}_", start, n))
        start += n
    offsets, pooled = {}, 0
    for split in present:
        offsets[f"{split}_"] = pooled
        pooled += sizes[split]
    used = [f"{s}_{a}" for s in wanted for a in SPLIT_ARRAYS if f"{s}_{a}" in keys]
    used += ["patient_ids"] if "patient_ids" in keys else []
    return Layout(tuple(parts), tuple(used), offsets, pooled, _unused_notes(keys, used, name, splits))


def _plain_layout(infos: dict[str, ArrayInfo], name: str, splits: tuple[str, ...]) -> Layout:
    keys = set(infos)
    if "images" not in keys:
        if "labels" in keys:
            raise DataError(name, "key 'images' missing", "images for the array 'labels'")
        raise DataError(
            name,
            f"no image arrays among keys {sorted(keys)}",
            "arrays train_images/train_labels (optionally val_*, test_*) or images/labels",
        )
    if splits:
        raise DataError(
            name,
            f"data.npz_splits = {list(splits)} but the file has no split arrays (only 'images'/'labels')",
            "data.npz_splits empty for a file with plain images/labels",
        )
    if "labels" not in keys:
        raise DataError(name, "key 'labels' missing", "labels for the array 'images'")
    n = infos["images"].shape[0] if infos["images"].shape else 0
    if n == 0:
        raise DataError(f"{name}, array 'images'", "0 records", "at least one image")
    used = [k for k in SPLIT_ARRAYS if k in keys]
    return Layout((Part("", 0, n),), tuple(used), {"": 0}, n, _unused_notes(keys, used, name, splits))


def _split_size(infos: dict[str, ArrayInfo], split: str) -> int:
    """Records of a split: the length of its images (of its labels, or ids, when it has none)."""
    for array in SPLIT_ARRAYS:
        info = infos.get(f"{split}_{array}")
        if info is not None:
            return info.shape[0] if info.shape else 0
    return 0


def _unused_notes(keys: set[str], used: list[str], name: str, splits: tuple[str, ...]) -> tuple[str, ...]:
    """Notes naming the arrays of the file that are not read, and why."""
    unused = sorted(keys - set(used))
    of_splits = [k for k in unused if any(k == f"{s}_{a}" for s in NPZ_SPLITS for a in SPLIT_ARRAYS)]
    other = [k for k in unused if k not in of_splits]
    notes = []
    if of_splits:
        notes.append(f"{name}: arrays {_names(of_splits)} not used (data.npz_splits = {list(splits)})")
    if other:
        notes.append(f"{name}: arrays {_names(other)} not used (not arrays fedsynth reads)")
    return tuple(notes)


def _names(keys: list[str]) -> str:
    return ", ".join(repr(k) for k in keys)
