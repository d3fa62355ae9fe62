"""Server-side checks on a hospital's returned arrays before they reach an aggregation rule.

An update that is malformed (missing/extra names, wrong shape or dtype), numerically broken
(NaN/Inf), too large, or suspiciously far from the model it started from is refused with a
one-line reason naming the hospital and the array, so the round can go on without it and the
log says why. These checks do not make an aggregate robust (a well-formed poisoned update passes
them); they stop updates that would crash or silently corrupt any rule.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

import numpy as np

from fedsynth.protocol import Arrays

#: Expected shape and dtype of each array a phase returns, by name.
Reference = dict[str, tuple[tuple[int, ...], np.dtype]]

_MAX_LISTED = 5


def reference_of(arrays: Mapping[str, np.ndarray], names: Iterable[str] | None = None) -> Reference:
    """Shapes and dtypes of ``arrays`` (the global model), restricted to ``names`` if given.

    Pass as ``names`` the arrays the phase trains and returns, so that a hospital returning the
    whole model when only part was asked for is refused as sending unexpected arrays.
    """
    keys = list(arrays) if names is None else list(names)
    absent = [k for k in keys if k not in arrays]
    if absent:
        raise KeyError(f"reference names not in the model: {absent[:_MAX_LISTED]}")
    return OrderedDict((k, (tuple(np.shape(arrays[k])), np.asarray(arrays[k]).dtype)) for k in keys)


def _listed(names: Iterable[str]) -> str:
    names = sorted(names)
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _wide(a: np.ndarray) -> np.ndarray:
    """Raveled in float64 (complex128 for complex), so squares of float16/32 cannot overflow."""
    a = np.asarray(a)
    return a.astype(np.complex128 if a.dtype.kind == "c" else np.float64).ravel()


def validate_update(
    arrays: Mapping[str, np.ndarray] | None,
    reference: Reference,
    hospital_id: int,
    max_bytes: int,
    *,
    norm_bound: float | None = None,
    relative_to: Arrays | None = None,
) -> str | None:
    """None if the update is acceptable, else a one-line reason naming hospital and array.

    Checks, in order: arrays present at all; no missing and no unexpected names; each value a
    numpy array with the reference shape and dtype; no NaN/Inf in floating arrays; total raw
    array bytes (``sum(a.nbytes)``, slightly below what :func:`fedsynth.federation.wire.content_nbytes`
    counts on the wire) at most ``max_bytes``; and, if ``norm_bound`` is given, the L2 norm over
    all floating arrays at most ``norm_bound``. With ``relative_to`` (the model the hospital was
    sent) the norm is that of the *change* ``arrays - relative_to``, which is what a scaled
    model-replacement attack inflates; without it, of the arrays themselves.
    """
    who = f"hospital {hospital_id}"
    if arrays is None:
        return f"{who}: sent no arrays"
    if not isinstance(arrays, Mapping):
        return f"{who}: sent {type(arrays).__name__} instead of named arrays"

    missing = [k for k in reference if k not in arrays]
    if missing:
        return f"{who}: missing array(s) {_listed(missing)}"
    extra = [k for k in arrays if k not in reference]
    if extra:
        return f"{who}: unexpected array(s) {_listed(extra)}"

    total = 0
    for name, (shape, dtype) in reference.items():
        value = arrays[name]
        if not isinstance(value, np.ndarray):
            return f"{who}: array {name!r} is a {type(value).__name__}, not a numpy array"
        if value.dtype != np.dtype(dtype):
            return f"{who}: array {name!r} has dtype {value.dtype}, expected {np.dtype(dtype)}"
        if tuple(value.shape) != tuple(shape):
            return f"{who}: array {name!r} has shape {tuple(value.shape)}, expected {tuple(shape)}"
        if value.dtype.kind in "fc":
            finite = np.isfinite(value)
            if not finite.all():
                n_nan = int(np.isnan(value).sum())
                n_inf = int(value.size - finite.sum()) - n_nan
                return f"{who}: array {name!r} contains {n_nan} NaN and {n_inf} Inf value(s)"
        total += value.nbytes

    if total > max_bytes:
        largest = max(reference, key=lambda k: arrays[k].nbytes)
        return (
            f"{who}: update is {total} bytes, over the limit of {max_bytes} "
            f"(largest array {largest!r}: {arrays[largest].nbytes} bytes)"
        )

    if norm_bound is not None:
        squares: dict[str, float] = {}
        for name in reference:
            value = arrays[name]
            if value.dtype.kind not in "fc":
                continue
            v = _wide(value)
            if relative_to is not None and name in relative_to:
                v = v - _wide(relative_to[name])
            squares[name] = float(np.vdot(v, v).real)
        norm = float(np.sqrt(sum(squares.values())))
        if squares and not norm <= norm_bound:
            worst = max(squares, key=squares.__getitem__)
            what = "change" if relative_to is not None else "norm"
            return (
                f"{who}: update {what} has L2 norm {norm:.4g}, over the bound {norm_bound:.4g} "
                f"(largest contribution: array {worst!r}, {np.sqrt(squares[worst]):.4g})"
            )
    return None


def validate_sealed(
    sealed: Mapping[int, bytes], hospital_id: int, hospitals: Iterable[int], max_bytes: int
) -> str | None:
    """None if a sealed-ring reply is acceptable as far as the server can see, else a one-line reason.

    The server cannot read a sealed blob (only its receiver can, and only the receiver can tell a
    forged or altered one), so it checks what it relays: every blob addressed to another hospital
    of the federation, non-empty bytes, each at most ``max_bytes``.
    """
    who = f"hospital {hospital_id}"
    known = set(hospitals)
    if not sealed:
        return f"{who}: sent no sealed models"
    for receiver, blob in sealed.items():
        if receiver == hospital_id or receiver not in known:
            return f"{who}: sealed a model for hospital {receiver}, not another hospital of the federation"
        if not isinstance(blob, (bytes, bytearray)) or not blob:
            return f"{who}: the sealed model for hospital {receiver} is empty or not bytes"
        if len(blob) > max_bytes:
            return f"{who}: the sealed model for hospital {receiver} is {len(blob)} bytes, over {max_bytes}"
    return None
