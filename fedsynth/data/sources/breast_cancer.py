"""scikit-learn's breast cancer table (Wisconsin diagnostic, 569 x 30): real, offline, table only.

Columns are the 30 features with names in snake_case ("mean radius" -> "mean_radius"); the label
is malignant (0) / benign (1), as in scikit-learn. Patient ids are "wdbc-<row>".

Public bounds: the coarse constants below, rounded outward to round numbers per feature family
(radius, texture, perimeter, area, ...). They were chosen with the published value ranges of this
data set in view (its description lists min/max), so they are declared rather than fitted by
fedsynth, but not independent of the data: treat them as public only in that sense.
``schema.bounds_source`` is "public". ``data.schema_file`` is not used for this source.
"""

from __future__ import annotations

import numpy as np

from fedsynth.data.config import DataConfig
from fedsynth.data.records import ColumnSpec, Dataset, Schema

#: Upper bounds per (feature family, statistic); lower bounds are 0 for every feature.
_HIGH = {
    "radius": (50.0, 5.0, 50.0),
    "texture": (60.0, 10.0, 60.0),
    "perimeter": (300.0, 40.0, 300.0),
    "area": (5000.0, 1000.0, 6000.0),
    "smoothness": (0.3, 0.05, 0.3),
    "compactness": (1.0, 0.2, 1.5),
    "concavity": (1.0, 0.5, 1.5),
    "concave_points": (0.5, 0.1, 0.5),
    "symmetry": (1.0, 0.1, 1.0),
    "fractal_dimension": (0.3, 0.05, 0.3),
}
_STATS = ("mean", "error", "worst")


def _column_name(feature: str) -> str:
    return feature.strip().replace(" ", "_")


def _bounds(column: str) -> tuple[float, float]:
    for s, stat in enumerate(_STATS):
        for family, highs in _HIGH.items():
            if column in (f"{stat}_{family}", f"{family}_{stat}"):
                return 0.0, highs[s]
    raise KeyError(column)  # pragma: no cover - every sklearn feature is covered


def load_breast_cancer(cfg: DataConfig) -> Dataset:
    # imported here: scikit-learn's datasets take a second to import, which every command paid
    from sklearn.datasets import load_breast_cancer as sklearn_breast_cancer

    bunch = sklearn_breast_cancer()
    names = [_column_name(f) for f in bunch.feature_names]
    columns = tuple(ColumnSpec(n, "numeric", *_bounds(n)) for n in names)
    schema = Schema(
        columns=columns,
        class_names=tuple(str(t) for t in bunch.target_names),
        image_shape=None,
        bounds_source="public",
    )
    n = bunch.data.shape[0]
    return Dataset(
        schema=schema,
        labels=bunch.target.astype(np.int64),
        patient_ids=np.array([f"wdbc-{i:03d}" for i in range(n)]),
        clinical=bunch.data.astype(np.float32),
        source="breast_cancer (scikit-learn)",
    )
