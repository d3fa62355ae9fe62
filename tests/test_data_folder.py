"""The folder source (images + CSV manifest) and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.io import imsave

from fedsynth.data import DataConfig, load_source
from fedsynth.errors import DataError


def _make_folder(root: Path, n: int = 6, rgb_index: int | None = None, extra_cols: bool = True) -> Path:
    root.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    header = ["file", "label"] + (["age", "sex"] if extra_cols else [])
    lines = [",".join(header)]
    for i in range(n):
        size = 40 if i % 2 else 24  # mixed sizes are resized
        if i == rgb_index:
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        else:
            img = rng.integers(0, 256, (size, size), dtype=np.uint8)
        imsave(root / f"img{i}.png", img, check_contrast=False)
        row = [f"img{i}.png", "healthy" if i % 2 else "sick"]
        if extra_cols:
            row += [str(40 + i), "F" if i % 3 else "M"]
        lines.append(",".join(row))
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def _cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(source="folder", path=str(root), **kw)


def test_loads_resizes_and_encodes(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    ds = load_source(_cfg(root, image_size=16))
    assert ds.images.shape == (6, 1, 16, 16) and ds.images.dtype == np.float32
    assert ds.schema.class_names == ("healthy", "sick")
    assert ds.labels.tolist() == [1, 0, 1, 0, 1, 0]
    assert ds.schema.column_names == ["age", "sex"]
    assert ds.patient_ids.tolist() == [f"img{i}.png" for i in range(6)]
    assert ds.schema.bounds_source == "data"
    assert ds.source == "imgs/manifest.csv"


def test_image_only_manifest(tmp_path):
    root = _make_folder(tmp_path / "imgs", extra_cols=False)
    ds = load_source(_cfg(root))
    assert ds.clinical is None and not ds.schema.has_table


def test_color_is_consistent(tmp_path):
    root = _make_folder(tmp_path / "imgs", rgb_index=2)
    assert load_source(_cfg(root)).images.shape[1] == 3  # one colour image: all RGB
    assert load_source(_cfg(root, color="gray")).images.shape[1] == 1
    gray_root = _make_folder(tmp_path / "gray")
    assert load_source(_cfg(gray_root)).images.shape[1] == 1


def test_patient_id_column_and_custom_manifest(tmp_path):
    root = _make_folder(tmp_path / "imgs", extra_cols=False)
    manifest = tmp_path / "list.csv"
    manifest.write_text("image,diagnosis,patient_id\nimg0.png,0,A\nimg1.png,1,B\nimg2.png,1,C\n")
    ds = load_source(_cfg(root, manifest=str(manifest), file_column="image", label_column="diagnosis"))
    assert ds.patient_ids.tolist() == ["A", "B", "C"] and ds.schema.class_names == ("0", "1")


def test_missing_image_file(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    (root / "img3.png").unlink()
    with pytest.raises(DataError) as err:
        load_source(_cfg(root))
    assert "manifest.csv, row 5, column 'file'" in str(err.value) and "img3.png" in str(err.value)


def test_unreadable_image(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    (root / "img2.png").write_text("not an image")
    with pytest.raises(DataError) as err:
        load_source(_cfg(root))
    assert "img2.png" in str(err.value) and "row 4" in str(err.value) and "cannot be read" in str(err.value)


def test_wrong_image_shape(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    imsave(root / "img1.png", np.zeros((8, 8, 2), dtype=np.uint8), check_contrast=False)
    with pytest.raises(DataError) as err:
        load_source(_cfg(root))
    assert "img1.png" in str(err.value) and "shape" in str(err.value)


def test_missing_manifest_and_folder(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        load_source(_cfg(tmp_path / "none"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"manifest.csv.*not found"):
        load_source(_cfg(tmp_path / "empty"))


def test_missing_label_column(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    with pytest.raises(DataError) as err:
        load_source(_cfg(root, label_column="diagnosis"))
    assert "manifest.csv, column 'diagnosis'" in str(err.value) and "missing column" in str(err.value)


def test_missing_label_value(tmp_path):
    root = _make_folder(tmp_path / "imgs", extra_cols=False)
    (root / "manifest.csv").write_text("file,label\nimg0.png,a\nimg1.png,NA\nimg2.png,b\n")
    with pytest.raises(DataError, match=r"row 3, column 'label'.*missing label"):
        load_source(_cfg(root))


def test_unknown_declared_class(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    with pytest.raises(DataError) as err:
        load_source(_cfg(root, class_names=("healthy", "ill")))
    assert "row 2, column 'label'" in str(err.value) and "'sick'" in str(err.value)


def test_clinical_inf_names_row_and_column(tmp_path):
    root = _make_folder(tmp_path / "imgs", extra_cols=False)
    (root / "manifest.csv").write_text("file,label,crp\nimg0.png,a,1.5\nimg1.png,b,inf\nimg2.png,b,2\n")
    with pytest.raises(DataError) as err:
        load_source(_cfg(root))
    assert "manifest.csv, row 3, column 'crp'" in str(err.value) and "Inf" in str(err.value)


def test_single_category_column_is_an_error(tmp_path):
    root = _make_folder(tmp_path / "imgs", extra_cols=False)
    (root / "manifest.csv").write_text("file,label,site\nimg0.png,a,X\nimg1.png,b,X\n")
    with pytest.raises(DataError, match=r"column 'site'.*single category"):
        load_source(_cfg(root))


def test_duplicate_file_rows(tmp_path):
    root = _make_folder(tmp_path / "imgs", extra_cols=False)
    (root / "manifest.csv").write_text("file,label\nimg0.png,a\nimg1.png,b\nimg0.png,b\n")
    with pytest.raises(DataError) as err:
        load_source(_cfg(root))
    assert "row 4" in str(err.value) and "img0.png" in str(err.value) and "one record per patient" in str(err.value)
