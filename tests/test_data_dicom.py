"""The DICOM source, on pydicom's bundled test files (offline), and its errors."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from fedsynth.data import DataConfig, load_source
from fedsynth.data.problems import FileProblemsError
from fedsynth.errors import ConfigError, DataError


def _bundled(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:  # pragma: no cover - bundled with pydicom
        pytest.skip(f"pydicom test file {name} not bundled")
    return str(path)


def _make_folder(root: Path) -> Path:
    """Four MR slices and one CT slice of five different patients, with a label in the header."""
    root.mkdir()
    mr = pydicom.dcmread(_bundled("MR_small.dcm"))
    for i in range(4):
        mr.PatientID = f"mr-{i}"
        mr.PatientAge = f"0{40 + 5 * i}Y"
        mr.PatientSex = "F" if i % 2 else "M"
        mr.StudyDescription = "lesion" if i % 2 else "normal"
        mr.save_as(root / f"mr{i}.dcm")
    ct = pydicom.dcmread(_bundled("CT_small.dcm"))  # PatientAge 000Y, PatientSex O
    ct.StudyDescription = "normal"
    sub = root / "ct"
    sub.mkdir()
    ct.save_as(sub / "ct.dcm")
    return root


def _cfg(root: Path, **kw) -> DataConfig:
    kw.setdefault("dicom_label_field", "StudyDescription")
    return DataConfig(source="dicom", path=str(root), **kw)


def test_loads_pixels_fields_and_labels(tmp_path):
    root = _make_folder(tmp_path / "dcm")
    ds = load_source(_cfg(root))
    assert len(ds) == 5
    assert ds.images.shape == (5, 1, 32, 32) and ds.images.dtype == np.float32
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0 and ds.images.std() > 0.05
    assert ds.patient_ids.tolist() == ["1CT1", "mr-0", "mr-1", "mr-2", "mr-3"]  # sorted paths: ct/ first
    assert ds.schema.column_names == ["PatientAge", "PatientSex"]
    age, sex = ds.schema.columns
    assert age.kind == "numeric" and ds.clinical[:, 0].tolist() == [0.0, 40.0, 45.0, 50.0, 55.0]
    assert sex.kind == "categorical" and sex.categories == ("F", "M", "O")
    assert ds.schema.class_names == ("lesion", "normal")
    assert ds.labels.tolist() == [1, 1, 0, 1, 0]
    assert ds.schema.bounds_source == "data"


def test_age_units():
    from fedsynth.data.sources.dicom_scan import _field

    ds = pydicom.dcmread(_bundled("MR_small.dcm"))
    for text, years in [("006M", 0.5), ("052W", 52 * 7 / 365.25), ("030Y", 30.0)]:
        ds.PatientAge = text
        assert float(_field(ds, "PatientAge", "f.dcm")) == pytest.approx(years)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom warns about the invalid AS value
        ds.PatientAge = "abc"
    with pytest.raises(DataError, match=r"f.dcm, field PatientAge.*'045Y'"):
        _field(ds, "PatientAge", "f.dcm")


def test_labels_from_csv(tmp_path):
    root = _make_folder(tmp_path / "dcm")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\nmr0.dcm,0\nmr1.dcm,1\nmr2.dcm,0\nmr3.dcm,1\nct/ct.dcm,1\n")
    ds = load_source(DataConfig(source="dicom", path=str(root), label_csv=str(labels), dicom_fields=()))
    assert ds.labels.tolist() == [1, 0, 1, 0, 1] and ds.clinical is None


def test_label_csv_missing_a_file(tmp_path):
    root = _make_folder(tmp_path / "dcm")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\nmr0.dcm,0\nmr1.dcm,1\nmr2.dcm,0\nmr3.dcm,1\n")
    with pytest.raises(DataError) as err:
        load_source(DataConfig(source="dicom", path=str(root), label_csv=str(labels)))
    assert "ct/ct.dcm" in str(err.value) and "no label in labels.csv" in str(err.value)


def test_label_csv_names_unknown_file(tmp_path):
    root = _make_folder(tmp_path / "dcm")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\nmr0.dcm,0\nmr1.dcm,1\nmr2.dcm,0\nmr3.dcm,1\nct/ct.dcm,1\nmr9.dcm,0\n")
    with pytest.raises(DataError, match=r"labels.csv, row 7, column 'file'.*mr9.dcm"):
        load_source(DataConfig(source="dicom", path=str(root), label_csv=str(labels)))


def test_non_dicom_file_is_an_error_not_skipped(tmp_path):
    root = _make_folder(tmp_path / "dcm")
    (root / "ct" / "notes.txt").write_text("scan notes")
    with pytest.raises(DataError) as err:
        load_source(_cfg(root))
    assert "ct/notes.txt" in str(err.value) and "not a DICOM file" in str(err.value)


def test_missing_header_field(tmp_path):
    root = tmp_path / "dcm"
    root.mkdir()
    shutil.copy(_bundled("MR_small.dcm"), root / "mr.dcm")  # has no PatientAge
    with pytest.raises(FileProblemsError) as err:
        load_source(_cfg(root))
    assert ("mr.dcm", "PatientAge") in {(p.file, p.field) for p in err.value.problems}
    assert "mr.dcm" in str(err.value) and "PatientAge" in str(err.value) and "missing" in str(err.value)


def test_duplicate_patient(tmp_path):
    root = _make_folder(tmp_path / "dcm")
    ds = pydicom.dcmread(root / "mr1.dcm")
    ds.PatientID = "mr-0"
    ds.save_as(root / "mr1.dcm")
    with pytest.raises(DataError) as err:
        load_source(_cfg(root))
    msg = str(err.value)
    assert "mr1.dcm" in msg and "mr0.dcm" in msg and "'mr-0'" in msg and "one record per patient" in msg


def test_unknown_keyword(tmp_path):
    root = _make_folder(tmp_path / "dcm")
    with pytest.raises(ConfigError, match="PatientShoeSize"):
        load_source(_cfg(root, dicom_fields=("PatientAge", "PatientShoeSize")))


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        load_source(_cfg(tmp_path / "none"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no files"):
        load_source(_cfg(tmp_path / "empty"))


def test_label_out_of_range_in_header(tmp_path):
    root = _make_folder(tmp_path / "dcm")
    with pytest.raises(DataError, match=r"field StudyDescription.*unknown class 'normal'"):
        load_source(_cfg(root, class_names=("lesion", "other")))
