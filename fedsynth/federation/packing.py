"""Named arrays as one contiguous buffer per dtype plus a compact manifest, for the wire.

Flower frames every array of an ``ArrayRecord`` on its own (a name, a dtype, a shape and a numpy
``.npy`` header: about 200 bytes each), which is most of what serializing a model adds to its raw
bytes. :func:`pack` instead concatenates a message's arrays into one flat buffer per wire dtype and
describes them in a manifest: a JSON list of runs of consecutive arrays of one dtype, each run the
dtype followed by one entry per array, all in the message's order::

    [[dtype, entry, entry, ...], [dtype, entry, ...], ...]
    entry: [name, shape, offset]                  exact: the array's own bytes
           [name, shape, offset, "float16"]       rounded to float16 in transit
           [name, shape, offset, "int8", scale]   int8 codes, value = code * scale

``offset`` counts elements of the buffer of the entry's wire dtype (its own dtype when exact), and
the entries of one buffer tile it exactly, in order. :func:`unpack` checks all of that and rebuilds
the arrays (copies, writable) with their own dtypes and shapes; an exact array comes back
bit-identical. A manifest that does not describe its buffers raises :class:`ManifestError` naming
the entry and what is wrong.

Reduced precision (``float16``, ``int8``) applies only to floating arrays whose values are all
finite and that have at least :data:`MIN_ROUNDED_SIZE` elements: a NaN or Inf travels exactly (the
server's validation must still see it), and rounding a bias or a scalar saves fewer bytes than its
manifest entry costs. ``int8`` is symmetric absmax quantization per array: ``scale = max|x| / 127``,
codes ``round(x / scale)``, so every value is off by at most ``scale / 2``. Rounding happens where
a message is encoded, after the site added its DP noise: post-processing of a DP output, which
changes nothing the ledger charges.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict

import numpy as np

from fedsynth.errors import FedsynthError

#: The values of ``federation.transfer_precision``.
PRECISIONS: tuple[str, ...] = ("float32", "float16", "int8")

#: Floating arrays smaller than this always travel exactly (see the module docstring).
MIN_ROUNDED_SIZE = 64

_FLOAT16_MAX = float(np.finfo(np.float16).max)


class ManifestError(FedsynthError):
    """A packed message whose manifest does not describe its buffers."""


def pack(arrays: dict[str, np.ndarray], precision: str = "float32") -> tuple[dict[str, bytes], str]:
    """``arrays`` as little-endian buffers keyed by wire dtype name, and the manifest (JSON)."""
    if precision not in PRECISIONS:
        raise ValueError(f"transfer precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    parts: dict[str, list[np.ndarray]] = {}
    sizes: dict[str, int] = {}
    manifest: list[list] = []
    for name, value in arrays.items():
        array = np.asarray(value)
        if array.dtype.kind not in "biufc":
            raise ManifestError(f"array {name!r}: dtype {array.dtype} cannot travel packed (numbers and booleans only)")
        if not manifest or manifest[-1][0] != array.dtype.name:
            manifest.append([array.dtype.name])
        wire, tail, coded = _encode(array, precision)
        manifest[-1].append([str(name), [int(n) for n in array.shape], sizes.get(wire, 0), *tail])
        parts.setdefault(wire, []).append(coded.astype(coded.dtype.newbyteorder("<"), copy=False).reshape(-1))
        sizes[wire] = sizes.get(wire, 0) + coded.size
    buffers = {wire: b"".join(np.ascontiguousarray(p).tobytes() for p in chunks) for wire, chunks in parts.items()}
    return buffers, json.dumps(manifest, separators=(",", ":"))


def _encode(array: np.ndarray, precision: str) -> tuple[str, list, np.ndarray]:
    """(wire dtype, manifest tail, values to put in the buffer) for one array."""
    exact = (array.dtype.name, [], array)
    if precision == "float32" or array.dtype.kind != "f" or array.size < MIN_ROUNDED_SIZE:
        return exact
    if not np.isfinite(array).all():
        return exact
    if precision == "float16":
        if array.dtype == np.float16 or float(np.abs(array).max()) > _FLOAT16_MAX:
            return exact
        return "float16", ["float16"], array.astype(np.float16)
    amax = float(np.abs(array).max())
    scale = amax / 127.0
    codes = np.zeros(array.shape, np.int8) if scale == 0.0 else np.clip(np.rint(array / scale), -127, 127)
    return "int8", ["int8", scale], codes.astype(np.int8)


def unpack(buffers: dict[str, bytes], manifest: str, where: str = "message") -> OrderedDict[str, np.ndarray]:
    """The arrays ``manifest`` describes in ``buffers``; :class:`ManifestError` if it does not."""
    views = {wire: _buffer_view(wire, data, where) for wire, data in buffers.items()}
    used = dict.fromkeys(views, 0)
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for i, (dtype, entry) in enumerate(_entries(manifest, where)):
        name, shape, offset, wire, scale = _entry(entry, dtype, i, where)
        what = f"{where}: manifest entry {i} ({name!r})"
        if name in out:
            raise ManifestError(f"{what}: duplicate array name")
        if wire not in views:
            raise ManifestError(f"{what}: no {wire} buffer in the message")
        count = math.prod(shape)
        if offset != used[wire]:
            raise ManifestError(
                f"{what}: offset {offset} in the {wire} buffer, expected {used[wire]} "
                "(entries tile the buffer in order)"
            )
        if offset + count > views[wire].size:
            raise ManifestError(
                f"{what}: {count} elements at offset {offset} overrun the {wire} buffer ({views[wire].size} elements)"
            )
        chunk = views[wire][offset : offset + count]
        used[wire] = offset + count
        if scale is not None:
            value = (chunk.astype(np.float64) * scale).astype(dtype)
        else:
            value = chunk.astype(dtype)  # native byte order, and a copy of the buffer
        out[name] = value.reshape(shape)
    for wire, view in views.items():
        if used[wire] != view.size:
            raise ManifestError(
                f"{where}: the {wire} buffer has {view.size} elements but the manifest describes {used[wire]}"
            )
    return out


def _buffer_view(wire: str, data: bytes, where: str) -> np.ndarray:
    try:
        dtype = np.dtype(wire)
    except TypeError:
        raise ManifestError(f"{where}: buffer {wire!r} is not named after a dtype") from None
    if dtype.kind not in "biufc" or dtype.name != wire:
        raise ManifestError(f"{where}: buffer {wire!r} is not named after a numeric dtype")
    if len(data) % dtype.itemsize:
        raise ManifestError(f"{where}: the {wire} buffer has {len(data)} bytes, not a multiple of {dtype.itemsize}")
    return np.frombuffer(data, dtype=dtype.newbyteorder("<"))


def _entries(manifest: str, where: str) -> list[tuple[np.dtype, object]]:
    """(dtype, raw entry) of every array the manifest lists, in order."""
    try:
        runs = json.loads(manifest)
    except (json.JSONDecodeError, TypeError) as e:
        raise ManifestError(f"{where}: the array manifest is not JSON ({e})") from None
    if not isinstance(runs, list):
        raise ManifestError(f"{where}: the array manifest is a {type(runs).__name__}, expected a list of dtype runs")
    out: list[tuple[np.dtype, object]] = []
    for r, run in enumerate(runs):
        if not isinstance(run, list) or len(run) < 2 or not isinstance(run[0], str):
            raise ManifestError(f"{where}: manifest run {r} is not [dtype, entry, ...]: {run!r}")
        try:
            dtype = np.dtype(run[0])
        except TypeError:
            raise ManifestError(f"{where}: manifest run {r}: dtype {run[0]!r} is not a dtype") from None
        if dtype.kind not in "biufc" or dtype.name != run[0]:
            raise ManifestError(f"{where}: manifest run {r}: dtype {run[0]!r} is not a numeric dtype name")
        out += [(dtype, entry) for entry in run[1:]]
    return out


def _entry(entry: object, dtype: np.dtype, i: int, where: str) -> tuple[str, tuple[int, ...], int, str, float | None]:
    """(name, shape, offset, wire dtype, int8 scale or None) of one manifest entry."""
    what = f"{where}: manifest entry {i}"
    if not isinstance(entry, list) or len(entry) not in (3, 4, 5):
        raise ManifestError(f"{what}: expected [name, shape, offset(, wire dtype(, scale))], got {entry!r}")
    name, shape, offset = entry[:3]
    dtype_name = dtype.name
    if not isinstance(name, str):
        raise ManifestError(f"{what}: name {name!r} is not a string")
    what = f"{what} ({name!r})"
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise ManifestError(f"{what}: shape {shape!r} is not a list of non-negative integers")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ManifestError(f"{what}: offset {offset!r} is not a non-negative integer")
    wire, scale = dtype_name, None
    if len(entry) >= 4:
        wire = entry[3]
        if dtype.kind != "f" or wire not in ("float16", "int8"):
            raise ManifestError(f"{what}: a {dtype_name} array cannot travel as {wire!r}")
        if (wire == "int8") != (len(entry) == 5):
            raise ManifestError(f"{what}: an int8 entry carries a scale, a float16 entry none")
    if len(entry) == 5:
        scale = entry[4]
        if not isinstance(scale, int | float) or isinstance(scale, bool) or not math.isfinite(scale) or scale < 0:
            raise ManifestError(f"{what}: int8 scale {scale!r} is not a finite non-negative number")
        scale = float(scale)
    return name, tuple(shape), offset, wire, scale
