"""Per-hospital scanner model: intensity gain and offset, noise level and blur.

A hospital's scanner is a pure function of ``(seed, site, shift)``: the server and every hospital
process draw the same scanner for the same site. ``shift`` scales all differences; with
``shift = 0`` every site has the reference scanner (gain 1, offset 0, base noise, no blur).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Noise standard deviation of the reference scanner (on the [0, 1] intensity scale).
BASE_NOISE = 0.025
#: Stream id for scanner draws within a seed (see ``fedsynth.data.federated``).
SCANNER_STREAM = 101


@dataclass(frozen=True)
class Scanner:
    """Image formation of one site: ``clip(offset + gain * |blur(x) + complex noise|, 0, 1)``."""

    gain: float = 1.0
    offset: float = 0.0
    noise_sd: float = BASE_NOISE
    #: Gaussian blur sigma in pixels of a 32 x 32 image (scaled with the image size).
    blur_px32: float = 0.0


def draw_scanner(seed: int, site: int, shift: float) -> Scanner:
    """The scanner of ``site`` for this seed: log-gain sd 0.6*shift, offset sd 0.12*shift,
    log-noise sd shift, blur |N(0, 2*shift)| pixels (at 32 x 32)."""
    z = np.random.default_rng([seed, SCANNER_STREAM, site]).standard_normal(4)
    return Scanner(
        gain=float(np.exp(0.6 * shift * z[0])),
        offset=float(0.12 * shift * z[1]),
        noise_sd=float(BASE_NOISE * np.exp(shift * z[2])),
        blur_px32=float(abs(2.0 * shift * z[3])),
    )
