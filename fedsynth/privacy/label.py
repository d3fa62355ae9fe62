"""What an epsilon means, in words a privacy officer can act on.

A finite epsilon is not by itself a meaningful protection: ``privacy.target_epsilon = 1e308`` is
"differentially private" on paper with a noise multiplier of 2e-153. Every place fedsynth prints a
privacy status (privacy.json, summary.json, the console, the report) takes its words from
:func:`privacy_guarantee`, so no output calls a run private that this module would not.

Levels:

- ``dp``: every hospital trained with DP-SGD, secret randomness, and the largest epsilon is at
  most :data:`MEANINGFUL_EPSILON`.
- ``none``: DP-SGD ran, but the guarantee is void or vacuous: epsilon above the threshold, or the
  noise was reproducible from a seed (anyone holding the seed can remove it).
- ``not-private``: some network trained on real records without noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

#: Above this epsilon fedsynth says "no meaningful formal guarantee": e^10 ~ 22,000 bounds the
#: likelihood ratio an attacker gains about one record, too loose to promise anything.
MEANINGFUL_EPSILON = 10.0

GuaranteeLevel = Literal["dp", "none", "not-private"]


@dataclass(frozen=True)
class Guarantee:
    """The privacy status of a run: a level, a one-line label, and what it means."""

    level: GuaranteeLevel
    label: str
    meaning: str

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "label": self.label,
            "meaning": self.meaning,
            "meaningful_epsilon_threshold": MEANINGFUL_EPSILON,
        }


def privacy_guarantee(
    private: bool,
    max_epsilon: float | None,
    delta: float | None,
    relation: str,
    reproducible_noise: bool = False,
    mechanism: str = "DP-SGD",
) -> Guarantee:
    """The status of a run whose largest per-hospital epsilon is ``max_epsilon``.

    ``private``: every network that touched real records ran with noise; ``relation``: the
    neighbouring relation the epsilons are stated under; ``reproducible_noise``: the DP noise and
    sampling were derived from a seed (simulation studies only).
    """
    if not private or max_epsilon is None:
        return Guarantee(
            "not-private",
            "NON-PRIVATE BASELINE (no DP guarantee)",
            "at least one network trained on real records without noise: the released model and "
            "synthetic data carry no formal privacy guarantee",
        )
    eps = f"{max_epsilon:.4g}" if math.isfinite(max_epsilon) else "infinite"
    if reproducible_noise:
        return Guarantee(
            "none",
            f"NOT PRIVATE against anyone who holds the seed (reproducible noise; epsilon {eps} on paper)",
            "the DP noise and Poisson sampling were derived from the run seed for a simulation study: "
            "whoever knows the seed can regenerate and subtract the noise, so the epsilon holds only "
            "against parties who do not",
        )
    if not math.isfinite(max_epsilon) or max_epsilon > MEANINGFUL_EPSILON:
        return Guarantee(
            "none",
            f"NO MEANINGFUL FORMAL GUARANTEE (epsilon {eps} > {MEANINGFUL_EPSILON:g})",
            f"{mechanism} ran, but above epsilon {MEANINGFUL_EPSILON:g} the bound e^epsilon on how much more "
            "likely any output becomes because of one patient's record exceeds 22,000: fedsynth does not "
            "call this private",
        )
    change = "with it replaced by any other record" if "replace" in relation else "without it"
    return Guarantee(
        "dp",
        f"differentially private ({mechanism}): epsilon {eps}, delta {delta:g}, {relation} neighbours",
        f"for every patient record, any output of this run is at most e^{eps} times more (or less) "
        f"likely with the record than {change}, except with probability {delta:g}",
    )
