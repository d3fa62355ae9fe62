"""The npz source (MedMNIST format) with optional clinical CSV and schema file, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedsynth.data import DataConfig, load_source
from fedsynth.errors import DataError


def _write_npz(path: Path, n=(12, 4, 4), rgb=False, size=28, seed=0, **extra) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n):
        shape = (k, size, size, 3) if rgb else (k, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % 2).reshape(k, 1).astype(np.uint8)
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    lines = [",".join(header)] + [",".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _clinical_rows(n: int) -> list[list[object]]:
    return [[30 + i, "M" if i % 3 else "F", 20.5 + i / 10] for i in range(n)]


def _cfg(path: Path, **kw) -> DataConfig:
    return DataConfig(source="npz", path=str(path), **kw)


def test_pools_all_splits_image_only(tmp_path):
    path = _write_npz(tmp_path / "mini.npz")
    ds = load_source(_cfg(path))
    assert len(ds) == 20
    assert ds.images.shape == (20, 1, 32, 32) and ds.images.dtype == np.float32
    assert ds.clinical is None and ds.schema.columns == ()
    assert ds.schema.class_names == ("0", "1")
    assert ds.patient_ids[0] == "train_0" and ds.patient_ids[12] == "val_0" and ds.patient_ids[-1] == "test_3"
    assert ds.source == "mini.npz"
    assert ds.schema.bounds_source == "public"  # nothing was fitted


def test_uint8_scaling_and_no_resize_at_native_size(tmp_path):
    path = _write_npz(tmp_path / "a.npz", size=32)
    raw = np.load(path)["train_images"]
    ds = load_source(_cfg(path))
    assert np.allclose(ds.images[:12, 0], raw / 255.0, atol=1e-6)


def test_rgb_kept_or_grayscaled(tmp_path):
    path = _write_npz(tmp_path / "rgb.npz", rgb=True)
    assert load_source(_cfg(path)).images.shape[1] == 3
    assert load_source(_cfg(path, color="gray")).images.shape[1] == 1
    gray = _write_npz(tmp_path / "gray.npz")
    assert load_source(_cfg(gray, color="rgb")).images.shape[1] == 3


def test_clinical_csv_by_index_inferred_bounds(tmp_path):
    path = _write_npz(tmp_path / "m.npz")
    csv = _write_csv(tmp_path / "clin.csv", ["age", "sex", "bmi"], _clinical_rows(20))
    ds = load_source(_cfg(path, clinical_csv=str(csv)))
    assert ds.schema.column_names == ["age", "sex", "bmi"]
    sex = ds.schema.columns[1]
    assert sex.kind == "categorical" and sex.categories == ("F", "M")
    age = ds.schema.columns[0]
    assert (age.low, age.high) == (30.0, 49.0)
    assert ds.schema.bounds_source == "data"
    assert ds.clinical[1].tolist() == pytest.approx([31.0, 1.0, 20.6])


def test_schema_file_gives_public_bounds(tmp_path):
    path = _write_npz(tmp_path / "m.npz")
    csv = _write_csv(tmp_path / "clin.csv", ["age", "sex", "bmi"], _clinical_rows(20))
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps(
            {
                "columns": [
                    {"name": "sex", "kind": "categorical", "categories": ["M", "F", "X"]},
                    {"name": "age", "kind": "numeric", "low": 18, "high": 90},
                    {"name": "bmi", "kind": "numeric", "low": 15, "high": 50},
                ]
            }
        )
    )
    ds = load_source(_cfg(path, clinical_csv=str(csv), schema_file=str(schema)))
    assert ds.schema.bounds_source == "public"
    assert ds.schema.column_names == ["sex", "age", "bmi"]  # order of the schema file
    assert ds.schema.columns[0].categories == ("M", "F", "X")
    assert ds.clinical[0, 0] == 1.0  # "F" is code 1 in the declared order
    assert ds.schema.columns[1].low == 18.0


def test_join_on_patient_id_reorders_rows(tmp_path):
    ids = np.array([f"pt{i:02d}" for i in range(20)])
    path = _write_npz(tmp_path / "m.npz", patient_ids=ids)
    rows = [[ids[i], 100 + i] for i in range(20)][::-1]
    csv = _write_csv(tmp_path / "clin.csv", ["patient_id", "score"], rows)
    ds = load_source(_cfg(path, clinical_csv=str(csv), join_on="patient_id"))
    assert ds.patient_ids.tolist() == ids.tolist()
    assert ds.clinical[:, 0].tolist() == [100.0 + i for i in range(20)]


def test_join_on_patient_id_needs_npz_ids(tmp_path):
    path = _write_npz(tmp_path / "m.npz")
    csv = _write_csv(tmp_path / "clin.csv", ["patient_id", "score"], [[f"p{i}", i] for i in range(20)])
    with pytest.raises(DataError) as err:
        load_source(_cfg(path, clinical_csv=str(csv), join_on="patient_id"))
    assert "m.npz" in str(err.value) and "patient_ids" in str(err.value)


def test_join_on_patient_id_missing_row(tmp_path):
    ids = np.array([f"pt{i}" for i in range(20)])
    path = _write_npz(tmp_path / "m.npz", patient_ids=ids)
    csv = _write_csv(tmp_path / "clin.csv", ["patient_id", "score"], [[ids[i], i] for i in range(19)])
    with pytest.raises(DataError) as err:
        load_source(_cfg(path, clinical_csv=str(csv), join_on="patient_id"))
    assert "'pt19'" in str(err.value) and "clin.csv" in str(err.value)


def test_duplicate_patient_ids(tmp_path):
    ids = np.array(["a"] * 2 + [f"p{i}" for i in range(18)])
    path = _write_npz(tmp_path / "m.npz", patient_ids=ids)
    with pytest.raises(DataError) as err:
        load_source(_cfg(path))
    assert "row 1" in str(err.value) and "'a'" in str(err.value) and "unique" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError) as err:
        load_source(_cfg(tmp_path / "nope.npz"))
    assert "nope.npz" in str(err.value) and "not found" in str(err.value)


def test_not_an_npz(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_text("hello")
    with pytest.raises(DataError, match="bad.npz"):
        load_source(_cfg(bad))


def test_no_image_arrays(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, foo=np.zeros(3))
    with pytest.raises(DataError) as err:
        load_source(_cfg(path))
    assert "x.npz" in str(err.value) and "train_images" in str(err.value)


def test_wrong_image_shape(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, train_images=np.zeros((4, 28), np.uint8), train_labels=np.zeros(4, np.uint8))
    with pytest.raises(DataError) as err:
        load_source(_cfg(path))
    assert "'train_images'" in str(err.value) and "(4, 28)" in str(err.value)


def test_wrong_label_shape(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, train_images=np.zeros((4, 8, 8), np.uint8), train_labels=np.zeros((4, 3), np.uint8))
    with pytest.raises(DataError) as err:
        load_source(_cfg(path))
    assert "'train_labels'" in str(err.value) and "(4, 3)" in str(err.value)


def test_nan_in_images_names_row(tmp_path):
    images = np.full((5, 8, 8), 0.5, np.float32)
    images[3, 2, 2] = np.nan
    path = tmp_path / "f.npz"
    np.savez(path, images=images, labels=np.array([0, 1, 0, 1, 0]))
    with pytest.raises(DataError) as err:
        load_source(_cfg(path))
    assert "array 'images', row 3" in str(err.value) and "NaN" in str(err.value)


def test_float_images_out_of_range(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(path, images=np.full((3, 8, 8), 2.0), labels=np.array([0, 1, 0]))
    with pytest.raises(DataError, match=r"array 'images', row 0.*outside \[0, 1\]"):
        load_source(_cfg(path))


@pytest.mark.parametrize("bad", ["nan", "inf", "", "abc"])
def test_bad_clinical_value_names_row_and_column(tmp_path, bad):
    path = _write_npz(tmp_path / "m.npz")
    rows = [[30 + i, 1.0] for i in range(20)]
    rows[6][1] = bad
    csv = _write_csv(tmp_path / "clin.csv", ["age", "crp"], rows)
    schema = tmp_path / "s.json"
    schema.write_text(
        json.dumps(
            {
                "columns": [
                    {"name": "age", "kind": "numeric", "low": 0, "high": 100},
                    {"name": "crp", "kind": "numeric", "low": 0, "high": 100},
                ]
            }
        )
    )
    with pytest.raises(DataError) as err:
        load_source(_cfg(path, clinical_csv=str(csv), schema_file=str(schema)))
    assert "clin.csv, row 8, column 'crp'" in str(err.value)


def test_unknown_and_missing_columns_with_schema_file(tmp_path):
    path = _write_npz(tmp_path / "m.npz")
    csv = _write_csv(tmp_path / "clin.csv", ["age", "weight"], [[30, 70]] * 20)
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"columns": [{"name": "age", "kind": "numeric", "low": 0, "high": 100}]}))
    with pytest.raises(DataError) as err:
        load_source(_cfg(path, clinical_csv=str(csv), schema_file=str(schema)))
    assert "column 'weight'" in str(err.value) and "unknown column" in str(err.value)
    schema.write_text(
        json.dumps(
            {
                "columns": [
                    {"name": "age", "kind": "numeric", "low": 0, "high": 100},
                    {"name": "weight", "kind": "numeric", "low": 0, "high": 300},
                    {"name": "height", "kind": "numeric", "low": 0, "high": 250},
                ]
            }
        )
    )
    with pytest.raises(DataError) as err:
        load_source(_cfg(path, clinical_csv=str(csv), schema_file=str(schema)))
    assert "column 'height'" in str(err.value) and "missing column" in str(err.value)


def test_bad_schema_file(tmp_path):
    path = _write_npz(tmp_path / "m.npz")
    csv = _write_csv(tmp_path / "clin.csv", ["age"], [[30]] * 20)
    schema = tmp_path / "s.json"
    schema.write_text('{"columns": [{"name": "age", "kind": "numeric", "low": 10, "high": 5}]}')
    with pytest.raises(DataError, match=r"s.json, column 'age'.*high > low"):
        load_source(_cfg(path, clinical_csv=str(csv), schema_file=str(schema)))
    schema.write_text("{not json")
    with pytest.raises(DataError, match=r"s.json, line 1.*invalid JSON"):
        load_source(_cfg(path, clinical_csv=str(csv), schema_file=str(schema)))
    with pytest.raises(DataError, match=r"missing.json.*not found"):
        load_source(_cfg(path, clinical_csv=str(csv), schema_file=str(tmp_path / "missing.json")))


def test_csv_row_count_mismatch(tmp_path):
    path = _write_npz(tmp_path / "m.npz")
    csv = _write_csv(tmp_path / "clin.csv", ["age"], [[30]] * 19)
    with pytest.raises(DataError) as err:
        load_source(_cfg(path, clinical_csv=str(csv)))
    assert "clin.csv" in str(err.value) and "19 data rows for 20 images" in str(err.value)


def test_ragged_csv_row(tmp_path):
    path = _write_npz(tmp_path / "m.npz")
    csv = tmp_path / "clin.csv"
    csv.write_text("age,sex\n" + "30,F\n" * 5 + "31\n" + "30,M\n" * 14)
    with pytest.raises(DataError, match=r"clin.csv, row 7.*1 cells"):
        load_source(_cfg(path, clinical_csv=str(csv)))


def test_label_out_of_range(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, train_images=np.zeros((4, 8, 8), np.uint8), train_labels=np.array([[0], [1], [2], [1]]))
    with pytest.raises(DataError) as err:
        load_source(_cfg(path, class_names=("benign", "malignant")))
    assert "array 'train_labels', row 2" in str(err.value) and "label 2 out of range" in str(err.value)
    np.savez(path, train_images=np.zeros((4, 8, 8), np.uint8), train_labels=np.array([0, -1, 1, 1]))
    with pytest.raises(DataError, match=r"'train_labels', row 1.*out of range"):
        load_source(_cfg(path))


def test_single_class_is_an_error(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, train_images=np.zeros((4, 8, 8), np.uint8), train_labels=np.zeros(4, np.int64))
    with pytest.raises(DataError, match="at least 2 classes"):
        load_source(_cfg(path))
