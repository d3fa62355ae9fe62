"""Phantom patients: clinical covariates, diagnosis label and the anatomy they drive.

The phantom is modelled loosely on axial spondyloarthritis seen on sagittal T2-weighted spine
MRI. Sampling order (the causal graph, known by construction):

1. age, sex, bmi, smoker are drawn independently.
2. the label is drawn from a multinomial logit of (sex, smoker, age): male sex and smoking raise
   the risk of disease; for 3 classes, age raises the risk of the structural class.
3. disease duration and CRP are drawn given the label (CRP is high in active disease).
4. anatomy is drawn given covariates and label: age -> darker, thinner discs; sex -> body width;
   bmi -> subcutaneous fat thickness; label (active) -> bright anterior-corner lesions whose count
   grows with disease duration and whose brightness grows with CRP; label (structural) ->
   anterior bridges (syndesmophytes), more likely with longer duration.

Anatomy belongs to the patient; the scanner (gain, offset, noise, blur) belongs to the hospital and
is applied at rendering (see ``scanner.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsynth.data.phantom import geometry as g
from fedsynth.data.records import ColumnSpec

#: Clinical columns with public bounds declared a priori (not fitted to the data).
PHANTOM_COLUMNS = (
    ColumnSpec("age", "numeric", 18.0, 90.0),
    ColumnSpec("sex", "categorical", categories=("F", "M")),
    ColumnSpec("bmi", "numeric", 15.0, 50.0),
    ColumnSpec("disease_duration_years", "numeric", 0.0, 40.0),
    ColumnSpec("crp_mg_l", "numeric", 0.0, 100.0),
    ColumnSpec("smoker", "categorical", categories=("no", "yes")),
)

CLASS_NAMES = {2: ("inactive", "active"), 3: ("inactive", "active", "structural")}
ACTIVE = 1
STRUCTURAL = 2

_NUM_SITES = 6


@dataclass(frozen=True)
class PhantomCohort:
    """Per-patient arrays (length n) of covariates, labels and anatomy parameters."""

    labels: np.ndarray  # int64 (n,)
    clinical: np.ndarray  # float32 (n, 6), columns as PHANTOM_COLUMNS
    body_width: np.ndarray  # (n,) fraction of image width
    disc_height: np.ndarray  # (n,)
    disc_intensity: np.ndarray  # (n, 4)
    marrow: np.ndarray  # (n,)
    fat_thickness: np.ndarray  # (n,)
    lesion_amplitude: np.ndarray  # (n, 6) excess over marrow, 0 where no lesion
    bridges: np.ndarray  # (n, 2) bool, one per inner disc
    shift: np.ndarray  # (n, 2) sub-pixel (dx, dy) jitter
    gain_jitter: np.ndarray  # (n,) patient-level intensity variation

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: np.ndarray) -> PhantomCohort:
        index = np.asarray(index, dtype=np.int64)
        return PhantomCohort(**{k: v[index] for k, v in self.__dict__.items()})


def sample_cohort(n: int, num_classes: int, rng: np.random.Generator) -> PhantomCohort:
    """Draw ``n`` phantom patients with ``num_classes`` (2 or 3) diagnosis classes."""
    if num_classes not in CLASS_NAMES:
        raise ValueError(f"num_classes must be 2 or 3, got {num_classes}")
    age = np.clip(rng.normal(44.0, 13.0, n), 18.0, 90.0)
    male = rng.random(n) < 0.5
    bmi = np.clip(rng.lognormal(np.log(26.0), 0.17, n), 15.0, 50.0)
    smoker = rng.random(n) < 0.3

    logits = np.zeros((n, num_classes))
    logits[:, ACTIVE] = -0.35 + 0.45 * male + 0.55 * smoker - 0.015 * (age - 44.0)
    if num_classes == 3:
        logits[:, STRUCTURAL] = -0.45 + 0.05 * (age - 44.0) + 0.45 * male + 0.6 * smoker
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    labels = (rng.random(n)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1).astype(np.int64)
    labels = np.minimum(labels, num_classes - 1)
    active = labels == ACTIVE
    structural = labels == STRUCTURAL

    shape = np.select([active, structural], [2.0, 3.0], 2.0)
    scale = np.select([active, structural], [3.5, 5.0], 2.5)
    duration = np.minimum(rng.gamma(shape, scale), np.clip(age - 16.0, 0.0, 40.0))
    log_crp = np.select([active, structural], [np.log(14.0), np.log(6.0)], np.log(2.5))
    crp = np.clip(np.exp(log_crp + 0.25 * smoker + rng.normal(0.0, 0.8, n)), 0.0, 100.0)

    clinical = np.stack(
        [
            np.floor(age),
            male.astype(float),
            np.round(bmi, 1),
            np.round(duration, 1),
            np.round(crp, 1),
            smoker.astype(float),
        ],
        axis=1,
    ).astype(np.float32)

    body_width = np.clip(
        np.where(male, g.BODY_WIDTH_M, g.BODY_WIDTH_F) + rng.normal(0.0, g.BODY_WIDTH_SD, n),
        *g.BODY_WIDTH_RANGE,
    )
    years = age - 18.0
    disc_height = np.clip(0.095 - 0.0006 * years + rng.normal(0.0, 0.006, n), 0.03, 0.11)
    disc_base = 0.85 - 0.0055 * years + rng.normal(0.0, 0.04, n)
    disc_intensity = np.clip(disc_base[:, None] + rng.normal(0.0, 0.03, (n, 4)), 0.3, 0.95)
    marrow = g.MARROW + rng.normal(0.0, 0.03, n)
    fat_thickness = np.clip(0.02 + 0.0042 * (bmi - 15.0) + rng.normal(0.0, 0.008, n), 0.015, 0.17)

    lesion_amplitude = _lesions(labels, duration, crp, rng)
    p_bridge = np.select(
        [structural, active],
        [np.clip(0.35 + 0.03 * duration, 0.0, 0.95), np.minimum(0.01 * duration, 0.3)],
        0.0,
    )
    bridges = rng.random((n, 2)) < p_bridge[:, None]
    # the structural class always shows at least one bridge
    first = rng.integers(0, 2, n)
    bridges[np.arange(n), first] |= structural

    return PhantomCohort(
        labels=labels,
        clinical=clinical,
        body_width=body_width,
        disc_height=disc_height,
        disc_intensity=disc_intensity,
        marrow=marrow,
        fat_thickness=fat_thickness,
        lesion_amplitude=lesion_amplitude,
        bridges=bridges,
        shift=rng.normal(0.0, 0.008, (n, 2)),
        gain_jitter=rng.normal(0.0, 0.04, n),
    )


def _lesions(labels: np.ndarray, duration: np.ndarray, crp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 6) lesion amplitudes: many bright lesions in active disease, rare faint mimics else."""
    n = labels.size
    active = labels == ACTIVE
    count = np.where(
        active,
        1 + rng.poisson(1.2 + 0.08 * duration),
        rng.poisson(np.where(labels == STRUCTURAL, 0.5, 0.15)),
    )
    count = np.minimum(count, _NUM_SITES)
    # choose `count` distinct sites per patient: the first `count` of a random site order
    rank = np.argsort(np.argsort(rng.random((n, _NUM_SITES)), axis=1), axis=1)
    present = rank < count[:, None]
    amp_active = 0.18 + 0.06 * np.log(np.maximum(crp, 0.5) / 10.0)
    amp = np.where(active, amp_active, 0.10)[:, None] + rng.normal(0.0, 0.04, (n, _NUM_SITES))
    return np.where(present, np.clip(amp, 0.06, 0.40), 0.0)
