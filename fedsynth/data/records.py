"""Records and schema: the in-memory form of a multimodal medical data set.

A record is an image (C x H x W, float32 in [0, 1]), a clinical vector (numeric columns as values,
categorical columns as integer codes into their category list), a class label and a patient id.
Either modality may be absent from a whole data set (image-only or table-only), never from single
records: a data set is column-oriented, one array per modality.

Numeric columns carry *public bounds* (``low``/``high``). Models scale clinical values with these
bounds instead of statistics of the training data, so preprocessing leaks nothing about patients.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from fedsynth.data.load_report import LoadReport
from fedsynth.errors import DataError

ColumnKind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class ColumnSpec:
    """One clinical column.

    ``low``/``high`` are public bounds for a numeric column (values are clipped to them when
    scaled); ``categories`` lists the values of a categorical column, whose codes are indices into
    this tuple.
    """

    name: str
    kind: ColumnKind
    low: float | None = None
    high: float | None = None
    categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "numeric":
            if self.low is None or self.high is None or not self.high > self.low:
                raise DataError(
                    f"column '{self.name}'",
                    f"numeric column has bounds low={self.low}, high={self.high}",
                    "public bounds with high > low",
                )
        elif self.kind == "categorical":
            if len(self.categories) < 2:
                raise DataError(
                    f"column '{self.name}'",
                    f"categorical column has {len(self.categories)} categories",
                    "at least 2 categories",
                )
        else:
            raise DataError(f"column '{self.name}'", f"unknown kind {self.kind!r}", "numeric or categorical")


@dataclass(frozen=True)
class Schema:
    """What every record of a data set looks like."""

    columns: tuple[ColumnSpec, ...]
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int] | None
    #: Where the numeric bounds come from: "public" (declared independently of the data) or
    #: "data" (fitted on the raw data; not differentially private, reported as such).
    bounds_source: Literal["public", "data"] = "public"
    #: Where the class names come from: "declared" (configuration, or known by construction) or
    #: "data" (inferred from the labels; a non-DP release wherever the schema is published).
    class_names_source: Literal["declared", "data"] = "declared"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_image(self) -> bool:
        return self.image_shape is not None

    @property
    def has_table(self) -> bool:
        return len(self.columns) > 0

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict:
        return {
            "columns": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "low": c.low,
                    "high": c.high,
                    "categories": list(c.categories),
                }
                for c in self.columns
            ],
            "class_names": list(self.class_names),
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "bounds_source": self.bounds_source,
            "class_names_source": self.class_names_source,
        }

    def digest(self) -> str:
        """A fingerprint of the whole schema: hospitals check their data against the public one."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def inferred_from_data(self) -> list[str]:
        """The parts of this schema that were inferred from patient data (not DP) rather than declared."""
        parts = []
        if self.bounds_source == "data":
            parts.append("clinical columns: kinds, numeric bounds and category levels fitted on the data")
        if self.class_names_source == "data":
            parts.append("class names (and the number of classes) inferred from the labels")
        return parts

    @classmethod
    def from_dict(cls, d: dict) -> Schema:
        return cls(
            columns=tuple(
                ColumnSpec(
                    name=c["name"],
                    kind=c["kind"],
                    low=c.get("low"),
                    high=c.get("high"),
                    categories=tuple(c.get("categories", ())),
                )
                for c in d["columns"]
            ),
            class_names=tuple(d["class_names"]),
            image_shape=tuple(d["image_shape"]) if d.get("image_shape") else None,
            bounds_source=d.get("bounds_source", "public"),
            class_names_source=d.get("class_names_source", "declared"),
        )


@dataclass
class Dataset:
    """A column-oriented set of records that all follow ``schema``.

    ``images``: float32 (N, C, H, W) in [0, 1], or None for table-only data.
    ``clinical``: float32 (N, len(schema.columns)), categorical columns as integer codes, or None
    for image-only data.
    ``labels``: int64 (N,) in [0, num_classes).
    ``patient_ids``: str (N,), unique.
    """

    schema: Schema
    labels: np.ndarray
    patient_ids: np.ndarray
    images: np.ndarray | None = None
    clinical: np.ndarray | None = None
    source: str = field(default="")
    #: What the loader of a pooled data set noted (resized images, skipped files, unused input
    #: arrays) and its memory estimate; None for data sets no source loader made (partitions,
    #: records files, synthetic data).
    report: LoadReport | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray) -> Dataset:
        """The records at ``index`` (an integer index array), in that order."""
        index = np.asarray(index, dtype=np.int64)
        return Dataset(
            schema=self.schema,
            labels=self.labels[index],
            patient_ids=self.patient_ids[index],
            images=None if self.images is None else self.images[index],
            clinical=None if self.clinical is None else self.clinical[index],
            source=self.source,
        )

    @classmethod
    def concat(cls, parts: list[Dataset], source: str) -> Dataset:
        """All records of ``parts`` (same schema) in one data set, in order."""
        if not parts:
            raise DataError(source, "no records to concatenate", "at least one data set")
        first = parts[0]
        return cls(
            schema=first.schema,
            labels=np.concatenate([p.labels for p in parts]),
            patient_ids=np.concatenate([p.patient_ids for p in parts]),
            images=None if first.images is None else np.concatenate([p.images for p in parts]),
            clinical=None if first.clinical is None else np.concatenate([p.clinical for p in parts]),
            source=source,
        )

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.schema.num_classes)

    def validate(self) -> None:
        """Check shapes, dtypes, ranges and finiteness; raise DataError naming the first bad row."""
        where = self.source or "data set"
        n = self.labels.shape[0] if self.labels.ndim == 1 else -1
        if self.labels.ndim != 1:
            raise DataError(where, f"labels have shape {self.labels.shape}", "a 1-D array")
        if not np.issubdtype(self.labels.dtype, np.integer):
            raise DataError(where, f"labels have dtype {self.labels.dtype}", "integer class indices")
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= self.schema.num_classes))
        if bad.size:
            raise DataError(
                f"{where}, row {int(bad[0])}",
                f"label {int(self.labels[bad[0]])} out of range",
                f"a class index in [0, {self.schema.num_classes - 1}]",
            )
        if self.patient_ids.shape != (n,):
            raise DataError(where, f"{self.patient_ids.shape[0]} patient ids for {n} labels", "one id per record")
        if self.images is None and self.clinical is None:
            raise DataError(where, "no image and no clinical data", "at least one modality")
        if self.schema.has_image != (self.images is not None):
            raise DataError(where, "image modality does not match the schema", "images iff schema.image_shape")
        if self.schema.has_table != (self.clinical is not None):
            raise DataError(where, "clinical modality does not match the schema", "a table iff schema.columns")
        if self.images is not None:
            self._validate_images(where, n)
        if self.clinical is not None:
            self._validate_clinical(where, n)

    def _validate_images(self, where: str, n: int) -> None:
        images = self.images
        assert images is not None and self.schema.image_shape is not None
        if images.shape != (n, *self.schema.image_shape):
            raise DataError(where, f"images have shape {images.shape}", f"({n}, {self.schema.image_shape})")
        if images.dtype != np.float32:
            raise DataError(where, f"images have dtype {images.dtype}", "float32 in [0, 1]")
        flat = images.reshape(n, int(np.prod(images.shape[1:])))
        bad = np.flatnonzero(~np.isfinite(flat).all(axis=1))
        if bad.size:
            raise DataError(f"{where}, row {int(bad[0])}", "image contains NaN or Inf", "finite pixel values")
        bad = np.flatnonzero((flat.min(axis=1, initial=0.0) < 0) | (flat.max(axis=1, initial=0.0) > 1))
        if bad.size:
            raise DataError(f"{where}, row {int(bad[0])}", "image pixels outside [0, 1]", "pixels scaled to [0, 1]")

    def _validate_clinical(self, where: str, n: int) -> None:
        clinical = self.clinical
        assert clinical is not None
        cols = self.schema.columns
        if clinical.shape != (n, len(cols)):
            raise DataError(where, f"clinical table has shape {clinical.shape}", f"({n}, {len(cols)})")
        for j, col in enumerate(cols):
            values = clinical[:, j]
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise DataError(
                    f"{where}, row {int(bad[0])}, column '{col.name}'", "value is NaN or Inf", "a finite value"
                )
            if col.kind == "categorical":
                codes_ok = (values == np.round(values)) & (values >= 0) & (values < len(col.categories))
                bad = np.flatnonzero(~codes_ok)
                if bad.size:
                    raise DataError(
                        f"{where}, row {int(bad[0])}, column '{col.name}'",
                        f"category code {values[bad[0]]!r} is not valid",
                        f"one of {list(col.categories)}",
                    )
