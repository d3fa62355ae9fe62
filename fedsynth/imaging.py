"""How fedsynth shows one image array: (C, H, W) in [0, 1] -> what matplotlib's imshow takes."""

from __future__ import annotations

import numpy as np


def display_image(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    """The array for ``imshow`` and its colormap: gray for one channel, RGB for three, the
    channel mean (gray) otherwise."""
    if img.shape[0] == 1:
        return img[0], "gray"
    if img.shape[0] == 3:
        return np.transpose(img, (1, 2, 0)), None
    return img.mean(axis=0), "gray"
