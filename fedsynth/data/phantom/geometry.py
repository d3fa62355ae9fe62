"""Fixed layout of the phantom's sagittal slice, in fractions of the image side.

x runs from anterior (0, left) to posterior (1, right), y from cranial (0, top) to caudal (1,
bottom). The renderer draws anatomy at these positions (plus a sub-pixel jitter per patient) and
the feature measurements read regions of interest at the same positions, so both agree at any
image size.
"""

from __future__ import annotations

import numpy as np

#: Anterior edge of the vertebral bodies.
X_ANTERIOR = 0.14
#: Mean anterior-posterior body width for women / men, its spread, and hard limits.
BODY_WIDTH_F = 0.30
BODY_WIDTH_M = 0.355
BODY_WIDTH_SD = 0.015
BODY_WIDTH_RANGE = (0.24, 0.44)
#: Disc centres (the first and last disc are cut by the image border); body i lies between
#: disc i and disc i + 1.
DISC_Y = (0.05, 0.35, 0.65, 0.95)
BODY_Y = (0.20, 0.50, 0.80)
#: Interior discs (fully visible, measured).
INNER_DISCS = (1, 2)
#: Spinal canal (CSF) and the spinal cord inside it.
CANAL_X = (0.62, 0.70)
CORD_X = (0.645, 0.675)
#: Posterior elements (spinous processes), one blob per body level.
POSTERIOR_X = (0.72, 0.79)
POSTERIOR_HALF_HEIGHT = 0.08
#: Paraspinal muscle starts here and runs to the subcutaneous fat band.
MUSCLE_X0 = 0.70
#: Posterior skin line; air beyond it. The fat band lies just inside it.
SKIN_X = 0.97
#: Corner lesion sites: inset from the anterior body corners (2 per body, 6 in all).
LESION_INSET = 0.05
LESION_SIGMA = 0.035
#: Anterior bridge (syndesmophyte) across an inner disc.
BRIDGE_X = (X_ANTERIOR - 0.06, X_ANTERIOR + 0.01)
BRIDGE_OVERHANG = 0.04
#: Nominal disc height used to place lesion regions of interest.
NOMINAL_DISC_HEIGHT = 0.075

#: Tissue intensities before the scanner model (T2-weighted-like: fat, CSF and healthy discs
#: bright, marrow intermediate, soft tissue dark).
SOFT = 0.20
MUSCLE = 0.30
FAT = 0.85
AIR = 0.02
CSF = 0.75
CORD = 0.45
POSTERIOR = 0.45
MARROW = 0.50
BRIDGE = 0.58


def lesion_sites() -> np.ndarray:
    """(6, 2) nominal (x, y) centres of the anterior corner lesion sites, body by body."""
    sites = []
    for b in range(3):
        top = DISC_Y[b] + NOMINAL_DISC_HEIGHT / 2
        bottom = DISC_Y[b + 1] - NOMINAL_DISC_HEIGHT / 2
        sites.append((X_ANTERIOR + LESION_INSET, top + LESION_INSET))
        sites.append((X_ANTERIOR + LESION_INSET, bottom - LESION_INSET))
    return np.asarray(sites)


def pixel_span(a: float, b: float, size: int) -> slice:
    """Pixels whose centres lie in [a, b] (at least one pixel, the nearest to the middle)."""
    centres = (np.arange(size) + 0.5) / size
    inside = np.flatnonzero((centres >= a) & (centres <= b))
    if inside.size == 0:
        j = int(np.clip(np.floor((a + b) / 2 * size), 0, size - 1))
        return slice(j, j + 1)
    return slice(int(inside[0]), int(inside[-1]) + 1)
