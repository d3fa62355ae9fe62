"""Inputs that never guess (issue #16): every malformed data set is refused before any training,
naming the file, field and row; size guards; warnings on too-small evaluations; DICOM problem
tables; `fedsynth check-data`; and data validation before the simulation engine starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from skimage.io import imsave
from typer.testing import CliRunner

from fedsynth.data import DataConfig, clear_federation_cache, load_source
from fedsynth.data.check import check_data
from fedsynth.data.guards import MIN_TEST_RECORDS_PER_CLASS
from fedsynth.data.problems import FileProblemsError
from fedsynth.data.records import ColumnSpec, Dataset, Schema
from fedsynth.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------- builders


def _npz(path: Path, n: dict[str, int], size: int = 28, drop: tuple[str, ...] = (), **extra) -> Path:
    """A MedMNIST-format file with ``n[split]`` records per split; keys in ``drop`` are left out."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, k in n.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (k, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % 2).reshape(k, 1).astype(np.uint8)
    for key in drop:
        arrays.pop(key)
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def _npz_cfg(path: Path, **kw) -> DataConfig:
    return DataConfig(source="npz", path=str(path), **kw)


def _folder(root: Path, ages: list[str], size: int = 24) -> Path:
    """An image folder whose manifest has a clinical column ``age`` with the given cells."""
    root.mkdir()
    rng = np.random.default_rng(0)
    lines = ["file,label,age"]
    for i, age in enumerate(ages):
        imsave(root / f"img{i}.png", rng.integers(0, 256, (size, size), dtype=np.uint8), check_contrast=False)
        lines.append(f"img{i}.png,{'sick' if i % 2 else 'healthy'},{age}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def _folder_cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(source="folder", path=str(root), **kw)


def _mr() -> pydicom.Dataset:
    path = get_testdata_file("MR_small.dcm", download=False)
    if path is None:  # pragma: no cover - bundled with pydicom
        pytest.skip("pydicom test file MR_small.dcm not bundled")
    return pydicom.dcmread(path)


def _dicom_folder(root: Path, n: int = 6) -> Path:
    """``n`` MR slices (64 x 64) of different patients, label in StudyDescription."""
    root.mkdir()
    for i in range(n):
        ds = _mr()
        ds.PatientID = f"p{i}"
        ds.PatientAge = f"0{40 + i}Y"
        ds.PatientSex = "F" if i % 2 else "M"
        ds.StudyDescription = "lesion" if i % 2 else "normal"
        ds.save_as(root / f"mr{i}.dcm")
    return root


def _edit(path: Path, **fields) -> None:
    ds = pydicom.dcmread(path)
    for key, value in fields.items():
        setattr(ds, key, value)
    ds.save_as(path)


def _dicom_cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(source="dicom", path=str(root), dicom_label_field="StudyDescription", **kw)


# ---------------------------------------------------------------------------------------------- npz splits


def test_npz_without_train_images_is_refused_naming_file_and_key(tmp_path):
    path = _npz(tmp_path / "m.npz", {"train": 12, "val": 4, "test": 4}, drop=("train_images",))
    with pytest.raises(DataError) as err:
        load_source(_npz_cfg(path))
    msg = str(err.value)
    assert "m.npz" in msg and "'train_images'" in msg and "data.npz_splits" in msg


def test_npz_falls_back_to_other_splits_only_when_asked(tmp_path):
    path = _npz(tmp_path / "m.npz", {"train": 12, "val": 4, "test": 6}, drop=("train_images",))
    ds = load_source(_npz_cfg(path, npz_splits=("val", "test")))
    assert len(ds) == 10 and ds.patient_ids[0] == "val_0" and ds.patient_ids[-1] == "test_5"
    notes = " ".join(ds.report.notes)
    assert "'train_labels'" in notes and "not used" in notes


def test_npz_empty_train_split_is_refused(tmp_path):
    path = _npz(tmp_path / "m.npz", {"train": 0, "val": 4, "test": 4})
    with pytest.raises(DataError) as err:
        load_source(_npz_cfg(path))
    msg = str(err.value)
    assert "m.npz" in msg and "'train_images'" in msg and "0 records" in msg


def test_npz_split_with_labels_but_no_images_is_refused(tmp_path):
    path = _npz(tmp_path / "m.npz", {"train": 12, "val": 4}, drop=("val_images",))
    with pytest.raises(DataError, match=r"m\.npz.*'val_images'"):
        load_source(_npz_cfg(path))


def test_npz_listed_split_missing_is_refused(tmp_path):
    path = _npz(tmp_path / "m.npz", {"train": 12, "test": 4})
    with pytest.raises(DataError, match=r"m\.npz.*'val_images'.*data\.npz_splits"):
        load_source(_npz_cfg(path, npz_splits=("train", "val")))


def test_npz_with_both_layouts_is_refused(tmp_path):
    path = _npz(tmp_path / "m.npz", {"train": 12}, images=np.zeros((3, 8, 8), np.uint8), labels=np.array([0, 1, 0]))
    with pytest.raises(DataError, match=r"m\.npz.*'images'.*'train_images'"):
        load_source(_npz_cfg(path))


def test_npz_unknown_array_is_noted_not_silently_dropped(tmp_path):
    path = _npz(tmp_path / "m.npz", {"train": 12, "test": 4}, train_masks=np.zeros((12, 4, 4), np.uint8))
    ds = load_source(_npz_cfg(path))
    assert len(ds) == 16
    assert any("'train_masks'" in note and "not used" in note for note in ds.report.notes)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"source": "npz", "path": "x.npz", "npz_splits": ("train", "holdout")},
        {"source": "npz", "path": "x.npz", "npz_splits": ("train", "train")},
        {"source": "folder", "path": "x", "npz_splits": ("train",)},
    ],
)
def test_npz_splits_config_errors_name_the_field(kwargs):
    with pytest.raises(ConfigError, match=r"data\.npz_splits.*expected"):
        DataConfig(**kwargs)


# ---------------------------------------------------------------------------------------------- column types


def test_mostly_numeric_column_with_a_word_is_refused_not_retyped(tmp_path):
    ages = [str(40 + i) for i in range(12)]
    ages[3] = "forty"
    root = _folder(tmp_path / "imgs", ages)
    with pytest.raises(DataError) as err:
        load_source(_folder_cfg(root))
    msg = str(err.value)
    assert "manifest.csv" in msg and "column 'age'" in msg and "row 5" in msg and "'forty'" in msg
    assert "data.schema_file" in msg


def test_mixed_column_names_every_odd_cell(tmp_path):
    ages = [str(40 + i) for i in range(12)]
    ages[1], ages[7] = "forty", "n.a."
    root = _folder(tmp_path / "imgs", ages)
    with pytest.raises(DataError) as err:
        load_source(_folder_cfg(root))
    msg = str(err.value)
    assert "row 3" in msg and "'forty'" in msg and "row 9" in msg and "'n.a.'" in msg and "2 of 12" in msg


def test_declared_schema_decides_the_type_and_every_bad_cell_is_named(tmp_path):
    ages = [str(40 + i) for i in range(12)]
    ages[3], ages[8] = "forty", "old"
    root = _folder(tmp_path / "imgs", ages)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"columns": [{"name": "age", "kind": "numeric", "low": 0, "high": 120}]}))
    with pytest.raises(DataError) as err:
        load_source(_folder_cfg(root, schema_file=str(schema)))
    msg = str(err.value)
    assert "row 5" in msg and "'forty'" in msg and "row 10" in msg and "'old'" in msg
    # declared categorical: numbers stay categories, never re-typed to numeric
    schema.write_text(json.dumps({"columns": [{"name": "age", "kind": "categorical", "categories": ages}]}))
    ds = load_source(_folder_cfg(root, schema_file=str(schema)))
    assert ds.schema.columns[0].kind == "categorical" and ds.clinical[3, 0] == 3.0


def test_all_numeric_and_all_text_columns_still_infer(tmp_path):
    root = _folder(tmp_path / "imgs", [str(40 + i) for i in range(6)])
    assert load_source(_folder_cfg(root)).schema.columns[0].kind == "numeric"
    other = _folder(tmp_path / "other", ["young", "old", "old", "young", "mid", "old"])
    assert load_source(_folder_cfg(other)).schema.columns[0].kind == "categorical"


# ---------------------------------------------------------------------------------------------- size guards


def test_npz_image_side_over_the_limit_is_refused_with_found_and_allowed(tmp_path):
    path = _npz(tmp_path / "big.npz", {"train": 6}, size=64)
    with pytest.raises(DataError) as err:
        load_source(_npz_cfg(path, max_image_side=48))
    msg = str(err.value)
    assert "big.npz" in msg and "'train_images'" in msg and "64 x 64" in msg and "48" in msg
    assert "data.max_image_side" in msg


def test_npz_memory_estimate_over_the_limit_is_refused(tmp_path):
    path = _npz(tmp_path / "m.npz", {"train": 40, "test": 10}, size=128)
    with pytest.raises(DataError) as err:
        load_source(_npz_cfg(path, image_size=256, max_memory_mb=20))
    msg = str(err.value)
    assert "m.npz" in msg and "estimated memory" in msg and "20 MB" in msg and "data.max_memory_mb" in msg


def test_record_count_over_the_limit_is_refused(tmp_path):
    path = _npz(tmp_path / "m.npz", {"train": 12, "test": 4})
    with pytest.raises(DataError, match=r"m\.npz.*16 records.*data\.max_records"):
        load_source(_npz_cfg(path, max_records=10))
    with pytest.raises(DataError, match=r"phantom.*data\.max_records"):
        check_data(DataConfig(phantom_records=300, max_records=100), 3, 0)


def test_phantom_memory_guard_fires_before_rendering():
    with pytest.raises(DataError, match=r"estimated memory.*data\.max_memory_mb"):
        check_data(DataConfig(phantom_records=10**6, image_size=512, max_memory_mb=1000), 3, 0)


def test_folder_image_over_the_side_limit_names_the_file(tmp_path):
    root = _folder(tmp_path / "imgs", [str(40 + i) for i in range(4)], size=40)
    with pytest.raises(DataError) as err:
        load_source(_folder_cfg(root, max_image_side=32))
    msg = str(err.value)
    assert "img0.png" in msg and "row 2" in msg and "40 x 40" in msg and "data.max_image_side" in msg


def test_size_limits_are_config_fields_with_checked_ranges():
    for field in ("max_image_side", "max_records", "max_memory_mb"):
        with pytest.raises(ConfigError, match=rf"data\.{field}"):
            DataConfig(**{field: 0})


# ---------------------------------------------------------------------------------------------- evaluation size


def _tiny(labels: list[int]) -> Dataset:
    schema = Schema(columns=(ColumnSpec("x", "numeric", 0.0, 1.0),), class_names=("a", "b"), image_shape=None)
    n = len(labels)
    x = np.linspace(0, 1, n, dtype=np.float32)[:, None]
    return Dataset(schema, np.array(labels, dtype=np.int64), np.array([f"p{i}" for i in range(n)]), clinical=x)


def test_scores_on_a_tiny_test_split_carry_a_warning():
    from fedsynth.evaluation.utility import train_on_test_on

    train = _tiny([0] * 20 + [1] * 20)
    scores = train_on_test_on(train, _tiny([0, 0, 1, 1]), seed=0, families=("logistic",))
    assert scores["warnings"] and "4 records" in scores["warnings"][0]
    assert str(MIN_TEST_RECORDS_PER_CLASS) in scores["warnings"][0]
    big = _tiny([0] * MIN_TEST_RECORDS_PER_CLASS + [1] * MIN_TEST_RECORDS_PER_CLASS)
    assert train_on_test_on(train, big, seed=0, families=("logistic",))["warnings"] == []


def test_console_headline_is_replaced_by_the_warning():
    from fedsynth.evaluation.sample_size import score_headline

    ok = {"tstr": {"mcc": 0.71, "warnings": []}, "trtr": {"mcc": 0.9, "warnings": []}}
    assert score_headline(ok) == "TSTR MCC 0.71"
    small = {"tstr": {"mcc": 1.0, "warnings": ["the test split has 4 records"]}, "trtr": {"mcc": 1.0}}
    line = score_headline(small, trtr=True)
    assert "1.0" not in line and "not reported" in line and "4 records" in line


def test_report_verdicts_warn_on_a_small_test_split():
    from fedsynth.evaluation.budget import privacy_budget
    from fedsynth.evaluation.report import _verdicts

    warning = "the test split has 30 records (class 'a': 15, class 'b': 15)"
    v = _verdicts({"utility_ratio": 1.0}, False, privacy_budget(None), None, small_test=warning)
    assert v["evaluation_size"]["level"] == "warn" and "30 records" in v["evaluation_size"]["text"]
    assert v["utility"]["level"] == "warn" and "100%" not in v["utility"]["text"]
    assert _verdicts({"utility_ratio": 1.0}, False, privacy_budget(None), None)["evaluation_size"]["level"] == "pass"


def test_check_data_warns_about_a_small_test_split(tmp_path):
    path = _npz(tmp_path / "m.npz", {"train": 40, "test": 10})
    check = check_data(_npz_cfg(path, min_records_per_hospital=5), 2, 0)
    assert any("test split" in w and str(MIN_TEST_RECORDS_PER_CLASS) in w for w in check.warnings)


# ---------------------------------------------------------------------------------------------- DICOM


def test_dicom_problems_are_reported_all_at_once_as_a_table(tmp_path):
    root = _dicom_folder(tmp_path / "dcm")
    _edit(root / "mr1.dcm", PatientID="p0")  # duplicate patient
    _edit(root / "mr3.dcm", PatientSex="")  # empty field
    _edit(root / "mr4.dcm", PixelData=b"\x00" * 10)  # undecodable pixels
    with pytest.raises(FileProblemsError) as err:
        load_source(_dicom_cfg(root))
    rows = {(p.file, p.field) for p in err.value.problems}
    assert rows == {
        ("mr0.dcm", "PatientID"),
        ("mr1.dcm", "PatientID"),
        ("mr3.dcm", "PatientSex"),
        ("mr4.dcm", "PixelData"),
    }
    msg = str(err.value)
    assert "4 of 6" in msg and "data.dicom_skip_refused" in msg
    header = next(line for line in msg.splitlines() if "problem" in line)
    assert header.split() == ["file", "field", "problem"]
    assert all(name in msg for name in ("mr0.dcm", "mr1.dcm", "mr3.dcm", "mr4.dcm"))


def test_dicom_refused_files_are_skipped_only_when_asked_and_counted(tmp_path):
    root = _dicom_folder(tmp_path / "dcm")
    _edit(root / "mr3.dcm", PatientSex="")
    _edit(root / "mr4.dcm", PixelData=b"\x00" * 10)
    ds = load_source(_dicom_cfg(root, dicom_skip_refused=True))
    assert len(ds) == 4 and sorted(ds.patient_ids.tolist()) == ["p0", "p1", "p2", "p5"]
    skipped = next(note for note in ds.report.notes if "skipped" in note)
    assert "2 of 6" in skipped and "mr3.dcm" in skipped and "mr4.dcm" in skipped


def test_dicom_resizing_is_noted_and_large_images_are_refused(tmp_path):
    root = _dicom_folder(tmp_path / "dcm", n=4)
    ds = load_source(_dicom_cfg(root, image_size=16))
    assert any("64 x 64" in note and "16 x 16" in note for note in ds.report.notes)
    with pytest.raises(FileProblemsError) as err:
        load_source(_dicom_cfg(root, max_image_side=32))
    assert {p.field for p in err.value.problems} == {"Rows/Columns"} and "data.max_image_side" in str(err.value)


def test_dicom_skip_refused_only_for_dicom():
    with pytest.raises(ConfigError, match=r"data\.dicom_skip_refused"):
        DataConfig(source="folder", path="x", dicom_skip_refused=True)


# ---------------------------------------------------------------------------------------------- check-data and simulate


def test_check_data_command_prints_what_it_would_train_on(tmp_path):
    from fedsynth.cli.main import app

    clear_federation_cache()
    path = _npz(tmp_path / "m.npz", {"train": 60, "val": 10, "test": 20})
    args = ["check-data", "--set", 'data.source="npz"', "--set", f'data.path="{path}"']
    args += ["--set", "federation.num_hospitals=2", "--set", "data.min_records_per_hospital=5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("hospital 0", "hospital 1", "test", "1 x 32 x 32", "MB", "90 records", "train 60, val 10, test 20"):
        assert text in out, text
    assert "labels" in out and "'0'" in out


def test_check_data_command_refuses_a_bad_input_without_a_traceback(tmp_path):
    from fedsynth.cli.main import app

    path = _npz(tmp_path / "m.npz", {"train": 0, "val": 4, "test": 4})
    result = CliRunner().invoke(app, ["check-data", "--set", 'data.source="npz"', "--set", f'data.path="{path}"'])
    assert result.exit_code == 2
    assert "m.npz" in result.output and "'train_images'" in result.output and "Traceback" not in result.output


def test_simulate_refuses_bad_data_before_the_engine_is_imported(tmp_path):
    """The simulation engine (Flower + Ray) is not even imported when the data is bad."""
    bad = _npz(tmp_path / "m.npz", {"val": 4, "test": 4}, train_labels=np.zeros(3, np.uint8))
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from fedsynth.cli.main import app\n"
        f"r = CliRunner().invoke(app, ['simulate', '--set', 'data.source=\"npz\"', '--set', 'data.path=\"{bad}\"',"
        f" '--out', '{tmp_path / 'run'}'])\n"
        "print('exit', r.exit_code)\n"
        "print(r.output)\n"
        "print('engine imported:', 'ray' in sys.modules or 'flwr.simulation' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    out = done.stdout
    assert "exit 2" in out and "'train_images'" in out, out + done.stderr
    assert "engine imported: False" in out, out
    assert not (tmp_path / "run" / "sites").exists()
