"""``DataConfig``: the ``[data]`` section of a run configuration.

A frozen dataclass whose fields use only ``str``, ``int``, ``float``, ``bool``, ``tuple[str, ...]``
and ``Literal`` types, so a generic loader can build it from a TOML table by field name and type
annotation. Optional paths and names use the empty string for "not set". ``__post_init__`` checks
types and values and raises ``ConfigError`` naming the field (``data.<field>``) and what was
expected; list values for tuple fields and int values for float fields are coerced.

Relative paths are used as given, i.e. relative to the working directory of the process that
loads the data (server and every hospital process must see the same files).
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, fields
from typing import Literal

from fedsynth.errors import ConfigError

SourceName = Literal["phantom", "npz", "folder", "dicom", "breast_cancer"]
PartitionScheme = Literal["iid", "dirichlet", "quantity"]

#: Sources that read user files and therefore need ``path``.
FILE_SOURCES = ("npz", "folder", "dicom")
#: The splits of a MedMNIST-format npz file, in their pooled order.
NPZ_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DataConfig:
    """Where the records come from and how they are split over hospitals.

    Sources: ``phantom`` (built-in procedural spine MRI + clinical table), ``npz`` (MedMNIST-format
    file at ``path``, optional ``clinical_csv``), ``folder`` (image folder ``path`` with a CSV
    ``manifest``), ``dicom`` (DICOM folder ``path``, clinical columns from ``dicom_fields``, label
    from ``dicom_label_field`` or ``label_csv``), ``breast_cancer`` (scikit-learn's table).

    The size guards ``max_image_side``, ``max_records`` and ``max_memory_mb`` are checked by the
    loaders before images are decoded (see ``fedsynth.data.guards``).
    """

    source: SourceName = "phantom"
    #: npz file, image folder or DICOM folder.
    path: str = ""
    #: npz only: clinical CSV joined to the pooled images (see ``join_on``).
    clinical_csv: str = ""
    #: npz only: "index" (CSV data row i <-> pooled record i) or "patient_id" (CSV column
    #: ``patient_id_column`` <-> the npz ``patient_ids`` array).
    join_on: Literal["index", "patient_id"] = "index"
    #: folder only: CSV manifest (``file_column``, ``label_column``, optional ``patient_id_column``,
    #: then clinical columns); empty means ``<path>/manifest.csv``.
    manifest: str = ""
    file_column: str = "file"
    label_column: str = "label"
    patient_id_column: str = "patient_id"
    #: dicom only: CSV mapping file (relative to ``path``) -> label; alternative to
    #: ``dicom_label_field``.
    label_csv: str = ""
    #: dicom only: header keywords used as clinical columns.
    dicom_fields: tuple[str, ...] = ("PatientAge", "PatientSex")
    #: dicom only: header keyword holding the label.
    dicom_label_field: str = ""
    #: Declared class names (label i is class_names[i]); empty: inferred from the labels
    #: (sorted strings, or "0".."max" for integer labels).
    class_names: tuple[str, ...] = ()
    #: Images are resized to image_size x image_size.
    image_size: int = 32
    #: "gray" (1 channel), "rgb" (3 channels) or "auto" (3 channels only if some image has
    #: distinct colour channels).
    color: Literal["auto", "gray", "rgb"] = "auto"
    #: Optional JSON file with public column bounds/categories:
    #: {"columns": [{"name", "kind", "low", "high", "categories"}]}.
    schema_file: str = ""
    partition: PartitionScheme = "iid"
    #: Concentration of the per-class Dirichlet over hospitals (smaller = more label skew).
    dirichlet_alpha: float = 0.5
    #: Log-normal sigma of hospital sizes for the "quantity" scheme (0 = equal sizes).
    quantity_skew: float = 1.0
    #: Fraction of records held out (stratified) as the real test split, before partitioning.
    test_fraction: float = 0.2
    min_records_per_hospital: int = 10
    #: Phantom: total records (test split included), number of classes (2 or 3) and strength
    #: of per-hospital scanner differences (0 = identical scanners).
    phantom_records: int = 6000
    phantom_classes: int = 2
    scanner_shift: float = 0.3
    #: npz only: the splits to pool, in this order (any of "train", "val", "test"). Empty: the
    #: standard layout, where the train split is required and val and test are pooled when the
    #: file has them. Every split used needs non-empty <split>_images and <split>_labels; listing
    #: splits is how a file without (or with an unwanted) train split is used on purpose.
    npz_splits: tuple[str, ...] = ()
    #: dicom only: leave out the files refused for per-file problems (a note lists them and says
    #: how many) instead of refusing the whole folder.
    dicom_skip_refused: bool = False
    #: Size guards, checked before images are decoded and before any training: the largest
    #: height or width of a source image (pixels), the most records in the pooled data set, and
    #: the most memory (MB) the data may take while loading and afterwards (estimated; models
    #: and simulation workers come on top).
    max_image_side: int = 4096
    max_records: int = 1_000_000
    max_memory_mb: int = 8192

    def __post_init__(self) -> None:
        self._check_types()
        self._check_values()

    # -- validation -------------------------------------------------------------------------

    def _check_types(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            coerced = _coerce(f.name, value, hints[f.name])
            if coerced is not value:
                object.__setattr__(self, f.name, coerced)

    def _check_values(self) -> None:
        if self.source in FILE_SOURCES and not self.path:
            raise ConfigError(f"data.path: empty (expected the input path for source '{self.source}')")
        if self.source == "dicom":
            if bool(self.dicom_label_field) == bool(self.label_csv):
                raise ConfigError(
                    "data.dicom_label_field / data.label_csv: "
                    + ("both set" if self.label_csv else "neither set")
                    + " (expected exactly one label source for source 'dicom')"
                )
        if self.source == "npz" and self.join_on == "patient_id" and not self.clinical_csv:
            raise ConfigError("data.join_on: 'patient_id' without data.clinical_csv (expected a clinical CSV)")
        for name in ("file_column", "label_column", "patient_id_column"):
            if not getattr(self, name):
                raise ConfigError(f"data.{name}: empty (expected a CSV column name)")
        _check_names("dicom_fields", self.dicom_fields, min_count=0)
        if self.class_names:
            _check_names("class_names", self.class_names, min_count=2)
        _check_range("image_size", self.image_size, 8, 1024)
        if self.source == "phantom" and self.image_size < 16:
            raise ConfigError(f"data.image_size: {self.image_size} (expected at least 16 for the phantom)")
        _check_range("dirichlet_alpha", self.dirichlet_alpha, 1e-3, 1e6)
        _check_range("quantity_skew", self.quantity_skew, 0.0, 5.0)
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction: {self.test_fraction} (expected a fraction in (0, 1))")
        _check_range("min_records_per_hospital", self.min_records_per_hospital, 1, 10**9)
        _check_range("phantom_records", self.phantom_records, 20, 10**7)
        if self.phantom_classes not in (2, 3):
            raise ConfigError(f"data.phantom_classes: {self.phantom_classes} (expected 2 or 3)")
        _check_range("scanner_shift", self.scanner_shift, 0.0, 2.0)
        self._check_source_options()
        _check_range("max_image_side", self.max_image_side, 8, 10**6)
        _check_range("max_records", self.max_records, 1, 10**9)
        _check_range("max_memory_mb", self.max_memory_mb, 1, 10**8)

    def _check_source_options(self) -> None:
        """Options of one source are refused with another, where they would be silently ignored."""
        _check_names("npz_splits", self.npz_splits, min_count=0)
        unknown = [s for s in self.npz_splits if s not in NPZ_SPLITS]
        if unknown:
            raise ConfigError(f"data.npz_splits: {list(self.npz_splits)} (expected some of {list(NPZ_SPLITS)})")
        if self.npz_splits and self.source != "npz":
            raise ConfigError(
                f"data.npz_splits: {list(self.npz_splits)} with source '{self.source}' (expected it only "
                "for source 'npz')"
            )
        if self.dicom_skip_refused and self.source != "dicom":
            raise ConfigError(
                f"data.dicom_skip_refused: true with source '{self.source}' (expected it only for source 'dicom')"
            )


def _coerce(name: str, value: object, hint: object) -> object:
    """Return ``value`` checked against ``hint`` (list -> tuple, int -> float), or raise."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed or not isinstance(value, str):
            raise ConfigError(f"data.{name}: {value!r} (expected one of {', '.join(map(repr, allowed))})")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"data.{name}: {value!r} (expected true or false)")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"data.{name}: {value!r} (expected an integer)")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"data.{name}: {value!r} (expected a number)")
        if not math.isfinite(value):
            raise ConfigError(f"data.{name}: {value!r} (expected a finite number)")
        return value if isinstance(value, float) else float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"data.{name}: {value!r} (expected a string)")
        return value
    if origin is tuple:
        if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"data.{name}: {value!r} (expected a list of strings)")
        return value if isinstance(value, tuple) else tuple(value)
    raise ConfigError(f"data.{name}: unsupported field type {hint!r}")  # pragma: no cover


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"data.{name}: {value} (expected a value in [{low}, {high}])")


def _check_names(name: str, values: tuple[str, ...], min_count: int) -> None:
    if len(values) < min_count:
        raise ConfigError(f"data.{name}: {list(values)} (expected at least {min_count} names)")
    for v in values:
        if not v.strip():
            raise ConfigError(f"data.{name}: contains an empty name (expected non-empty names)")
    if len(set(values)) != len(values):
        raise ConfigError(f"data.{name}: {list(values)} has duplicates (expected distinct names)")
