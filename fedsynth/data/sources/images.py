"""Turning raw image arrays into fedsynth's (N, C, S, S) float32 images in [0, 1].

Intensity: unsigned integer images are divided by their dtype's maximum (uint8 / 255, uint16 /
65535); float images must already lie in [0, 1]; NaN/Inf is an error naming the image. Colour:
"gray" converts RGB with ITU-R BT.709 luma weights (scikit-image ``rgb2gray``), "rgb" replicates a
gray image into 3 channels, "auto" keeps 3 channels only if some image has channels that differ
(an RGB file with R = G = B counts as gray). An alpha channel is dropped. Size: images are resized
to S x S with bilinear interpolation and anti-aliasing (non-square images are stretched).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from skimage.color import rgb2gray
from skimage.transform import resize

from fedsynth.errors import DataError

Color = Literal["auto", "gray", "rgb"]

#: An image whose side is this many times the target size (or 1/this) is "far" from it.
FAR_FACTOR = 4


def to_unit_range(img: np.ndarray, where: str) -> np.ndarray:
    """One image (any shape) as float64 in [0, 1]."""
    if img.dtype == bool:
        return img.astype(np.float64)
    if img.dtype.kind == "u":
        return img.astype(np.float64) / np.iinfo(img.dtype).max
    if img.dtype.kind == "f":
        if not np.isfinite(img).all():
            raise DataError(where, "image contains NaN or Inf", "finite pixel values")
        lo, hi = float(img.min(initial=0.0)), float(img.max(initial=0.0))
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                where, f"float pixel values in [{lo:.4g}, {hi:.4g}]", "floats in [0, 1] or unsigned integers"
            )
        return img.astype(np.float64)
    if img.dtype.kind == "i":
        if img.size and int(img.min()) < 0:
            raise DataError(where, f"negative pixel values (dtype {img.dtype})", "non-negative integer pixels")
        return img.astype(np.float64) / np.iinfo(img.dtype).max
    raise DataError(where, f"pixel dtype {img.dtype}", "integer or float pixels")


def channels_last(img: np.ndarray, where: str) -> np.ndarray:
    """(H, W) / (H, W, 1) / (H, W, 3) / (H, W, 4) -> (H, W, 1 or 3)."""
    if img.ndim == 2:
        return img[:, :, None]
    if img.ndim == 3 and img.shape[2] in (1, 3, 4):
        return img[:, :, :3] if img.shape[2] == 4 else img
    raise DataError(where, f"image has shape {img.shape}", "(H, W), (H, W, 3) or (H, W, 4)")


def is_color(img: np.ndarray) -> bool:
    """Whether a channels-last image has channels that differ."""
    return img.shape[-1] == 3 and not (
        np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])
    )


def output_channels(color: Color, any_color: bool) -> int:
    if color == "gray":
        return 1
    if color == "rgb":
        return 3
    return 3 if any_color else 1


def convert(img: np.ndarray, channels: int) -> np.ndarray:
    """Channels-last float image(s) (..., H, W, 1 or 3) to ``channels`` channels."""
    have = img.shape[-1]
    if have == channels:
        return img
    if channels == 1:
        return rgb2gray(img)[..., None]
    return np.repeat(img, 3, axis=-1)


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, C) float in [0, 1] -> (N, C, size, size) float32."""
    n, h, w, c = images.shape
    if (h, w) != (size, size):
        images = resize(images, (n, size, size, c), order=1, mode="reflect", anti_aliasing=True, preserve_range=True)
    return np.clip(images, 0.0, 1.0).astype(np.float32).transpose(0, 3, 1, 2).copy()


def fit_image(img: np.ndarray, size: int) -> np.ndarray:
    """One channels-last float image (H, W, C) in [0, 1] resized to (size, size, C), float64.

    Loaders resize every image as soon as it is read, so that only one full-size image is in
    memory at a time; the colour mode is chosen afterwards (gray conversion and replication are
    per-pixel linear, so they commute with the resize up to rounding).
    """
    h, w, c = img.shape
    if (h, w) == (size, size):
        return img.astype(np.float64, copy=False)
    out = resize(img, (size, size, c), order=1, mode="reflect", anti_aliasing=True, preserve_range=True)
    return np.clip(out, 0.0, 1.0)


def resize_note(what: str, sizes: Sequence[tuple[int, int]], size: int) -> str | None:
    """A note naming how many images were resized from which sizes to ``size`` x ``size`` (None: none
    was). Images far from the target (4 times larger or smaller) are called out: detail is lost or
    invented there."""
    counts: dict[tuple[int, int], int] = {}
    for hw in sizes:
        if hw != (size, size):
            counts[hw] = counts.get(hw, 0) + 1
    if not counts:
        return None
    parts = ", ".join(f"{n} from {h} x {w}" for (h, w), n in sorted(counts.items(), key=lambda kv: -kv[1]))
    note = f"{what}: {sum(counts.values())} of {len(sizes)} images resized to {size} x {size} ({parts})"
    far = [hw for hw in counts if max(hw) >= FAR_FACTOR * size or min(hw) * FAR_FACTOR <= size]
    if far:
        note += (
            f"; {sum(counts[hw] for hw in far)} of them are {FAR_FACTOR} or more times larger or smaller than the "
            "target: check data.image_size"
        )
    return note


def stack_images(loaded: Sequence[np.ndarray], color: Color, size: int, locate: Callable[[int], str]) -> np.ndarray:
    """Channels-last float images of any sizes -> (N, C, size, size) float32, one colour mode."""
    any_color = any(is_color(img) for img in loaded)
    channels = output_channels(color, any_color)
    out = np.empty((len(loaded), channels, size, size), dtype=np.float32)
    for i, img in enumerate(loaded):
        out[i] = resize_batch(convert(img, channels)[None], size)[0]
        if not np.isfinite(out[i]).all():  # pragma: no cover - inputs were checked
            raise DataError(locate(i), "image contains NaN or Inf after resizing", "finite pixels")
    return out
