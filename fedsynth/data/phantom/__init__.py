"""The built-in phantom: procedural sagittal spine MRI slices with a clinical table and a label.

Each record is a 1-channel image_size x image_size slice of a vertebral column (three vertebral
bodies separated by discs, spinal canal, posterior elements, paraspinal muscle and a subcutaneous
fat band) plus six clinical columns (age, sex, bmi, disease_duration_years, crp_mg_l, smoker) and
a diagnosis (inactive / active [/ structural]). Image content is driven by the covariates and the
label (see ``cohort.py`` and ``PHANTOM_ASSOCIATIONS``), so cross-modal associations are known by
construction and can be measured on synthetic data with ``phantom_image_features``.

Hospital heterogeneity: the cohort (covariates, labels, anatomy) is sampled for the whole pool
first, then split and partitioned on labels; each hospital's records are rendered with that
hospital's scanner (``draw_scanner(seed, hospital, shift)``) and a noise stream of its own, so a
hospital's data depend only on (seed, hospital index) and the partition. The held-out test split
is rendered with the same hospital scanners: each test record is assigned one of the hospitals
uniformly at random (a seeded draw) and rendered with that hospital's scanner, so the test split
follows the federation's scanner mix rather than an unseen site.
"""

from __future__ import annotations

import numpy as np

from fedsynth.data.phantom.cohort import CLASS_NAMES, PHANTOM_COLUMNS, PhantomCohort, sample_cohort
from fedsynth.data.phantom.features import (
    FEATURE_NAMES,
    PHANTOM_ASSOCIATIONS,
    Association,
    AssociationResult,
    covariate_values,
    measure_associations,
    phantom_image_features,
)
from fedsynth.data.phantom.render import render
from fedsynth.data.phantom.scanner import Scanner, draw_scanner
from fedsynth.data.records import Dataset, Schema

__all__ = [
    "CLASS_NAMES",
    "FEATURE_NAMES",
    "PHANTOM_ASSOCIATIONS",
    "PHANTOM_COLUMNS",
    "Association",
    "AssociationResult",
    "PhantomCohort",
    "Scanner",
    "covariate_values",
    "draw_scanner",
    "make_phantom",
    "measure_associations",
    "phantom_dataset",
    "phantom_image_features",
    "phantom_schema",
    "render",
    "sample_cohort",
]


def phantom_schema(num_classes: int, image_size: int) -> Schema:
    """Schema of the phantom: public bounds declared a priori, 1-channel images."""
    return Schema(
        columns=PHANTOM_COLUMNS,
        class_names=CLASS_NAMES[num_classes],
        image_shape=(1, image_size, image_size),
        bounds_source="public",
    )


def phantom_ids(index: np.ndarray) -> np.ndarray:
    """Patient ids of cohort positions (unique within a cohort)."""
    return np.array([f"P{int(i):06d}" for i in index])


def phantom_dataset(
    cohort: PhantomCohort,
    index: np.ndarray,
    scanner: Scanner,
    rng: np.random.Generator,
    image_size: int,
    num_classes: int,
    source: str,
) -> Dataset:
    """Render the cohort members at ``index`` with one scanner into a ``Dataset``."""
    index = np.asarray(index, dtype=np.int64)
    members = cohort.take(index)
    return Dataset(
        schema=phantom_schema(num_classes, image_size),
        labels=members.labels.copy(),
        patient_ids=phantom_ids(index),
        images=render(members, scanner, rng, image_size),
        clinical=members.clinical.copy(),
        source=source,
    )


def make_phantom(
    num_records: int = 1800,
    num_classes: int = 2,
    image_size: int = 32,
    seed: int = 0,
    scanner: Scanner | None = None,
) -> Dataset:
    """A whole phantom pool rendered with one scanner (default: the reference scanner).

    For standalone use (tests, inspection); federated runs use ``load_federation``, which renders
    each hospital with its own scanner.
    """
    cohort = sample_cohort(num_records, num_classes, np.random.default_rng([seed, 0]))
    return phantom_dataset(
        cohort,
        np.arange(num_records),
        scanner or Scanner(),
        np.random.default_rng([seed, 1]),
        image_size,
        num_classes,
        source="phantom",
    )
