"""DataConfig: defaults, field types a generic TOML loader can build, and validation errors."""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

import pytest

from fedsynth.data import DataConfig
from fedsynth.errors import ConfigError

ALLOWED_TYPES = (str, int, float, bool)


def test_defaults_are_valid_and_hashable():
    cfg = DataConfig()
    assert cfg.source == "phantom"
    assert cfg.image_size == 32
    assert cfg.phantom_records == 6000 and cfg.phantom_classes == 2
    assert cfg.partition == "iid"
    hash(cfg)  # used as a cache key
    assert DataConfig() == cfg


def test_field_types_are_loader_friendly():
    hints = typing.get_type_hints(DataConfig)
    for f in dataclasses.fields(DataConfig):
        hint = hints[f.name]
        origin = typing.get_origin(hint)
        ok = hint in ALLOWED_TYPES or origin is Literal or hint == tuple[str, ...]
        assert ok, f"{f.name}: {hint}"
        assert f.name == f.name.lower()
        assert f.default is not dataclasses.MISSING


def test_coercions_from_toml_values():
    cfg = DataConfig(dicom_fields=["PatientAge"], dirichlet_alpha=1, quantity_skew=2)
    assert cfg.dicom_fields == ("PatientAge",)
    assert isinstance(cfg.dirichlet_alpha, float) and cfg.dirichlet_alpha == 1.0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"source": "mnist"}, "data.source"),
        ({"partition": "random"}, "data.partition"),
        ({"image_size": "32"}, "data.image_size"),
        ({"image_size": True}, "data.image_size"),
        ({"image_size": 4}, "data.image_size"),
        ({"test_fraction": 0.0}, "data.test_fraction"),
        ({"test_fraction": 1.0}, "data.test_fraction"),
        ({"dirichlet_alpha": 0.0}, "data.dirichlet_alpha"),
        ({"dirichlet_alpha": float("nan")}, "data.dirichlet_alpha"),
        ({"quantity_skew": -1.0}, "data.quantity_skew"),
        ({"phantom_classes": 4}, "data.phantom_classes"),
        ({"phantom_records": 5}, "data.phantom_records"),
        ({"min_records_per_hospital": 0}, "data.min_records_per_hospital"),
        ({"scanner_shift": -0.1}, "data.scanner_shift"),
        ({"dicom_fields": ("PatientAge", 3)}, "data.dicom_fields"),
        ({"dicom_fields": ("PatientAge", "PatientAge")}, "data.dicom_fields"),
        ({"class_names": ("only",)}, "data.class_names"),
        ({"source": "npz"}, "data.path"),
        ({"source": "folder", "path": ""}, "data.path"),
        ({"source": "dicom", "path": "x"}, "data.dicom_label_field"),
        ({"source": "dicom", "path": "x", "dicom_label_field": "A", "label_csv": "b"}, "data.label_csv"),
        ({"source": "npz", "path": "x.npz", "join_on": "patient_id"}, "data.join_on"),
        ({"join_on": "name"}, "data.join_on"),
        ({"label_column": ""}, "data.label_column"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        DataConfig(**kwargs)
    assert field in str(err.value)
    assert "expected" in str(err.value)


def test_frozen():
    cfg = DataConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.image_size = 64  # type: ignore[misc]
