"""Size and sanity guards: image sizes, record counts and memory checked against the configured limits.

The limits are fields of :class:`~fedsynth.data.config.DataConfig` (``max_image_side``,
``max_records``, ``max_memory_mb``). Loaders call these checks as soon as the numbers are known
and before the expensive work: an npz file's shapes come from its array headers, a folder's image
size from the file header, a DICOM file's from its Rows/Columns, so a too-large input is refused
before it is decoded. Every refusal says what was found, what is allowed and which key allows more.

``MIN_TEST_RECORDS_PER_CLASS`` is the documented minimum of held-out records per class below
which evaluation scores (TSTR, TRTR) carry a warning instead of standing as a headline.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedsynth.data.config import DataConfig
from fedsynth.data.load_report import MB, MemoryEstimate
from fedsynth.errors import DataError

#: Fewest held-out (test split) records per class for an evaluation score to stand on its own.
#: With 20 records per class one misclassified record moves balanced accuracy by 2.5 points and
#: MCC by about 0.05; below that a score says little about the synthetic data.
MIN_TEST_RECORDS_PER_CLASS = 20

#: Bytes a patient id takes in memory (numpy unicode, up to 24 characters).
ID_BYTES = 4 * 24
#: Float64 copies of an image alive at once while one is converted: decoded, anti-aliasing
#: filtered, resized.
WORKING_COPIES = 3


def check_image_side(where: str, height: int, width: int, cfg: DataConfig) -> None:
    """Refuse a source image whose height or width exceeds ``data.max_image_side``."""
    if max(height, width) > cfg.max_image_side:
        raise DataError(
            where,
            f"image of {height} x {width} pixels",
            f"at most {cfg.max_image_side} pixels per side (data.max_image_side); downsample the images "
            "before loading, or raise the limit",
        )


def check_record_count(where: str, records: int, cfg: DataConfig) -> None:
    """Refuse a pool of more than ``data.max_records`` records."""
    if records > cfg.max_records:
        raise DataError(
            where,
            f"{records} records",
            f"at most {cfg.max_records} records (data.max_records); select fewer records, or raise the limit",
        )


def records_bytes(records: int, channels: int, image_size: int, columns: int) -> int:
    """Bytes of ``records`` records as fedsynth holds them (``channels`` = 0: no images)."""
    per_record = channels * image_size * image_size * 4 + columns * 4 + 8 + ID_BYTES
    return records * per_record


def working_bytes(images: int, height: int, width: int, channels: int, image_size: int) -> int:
    """Bytes of the conversion working set for ``images`` source images converted at once: float64
    copies of the source pixels and of the resized output (float64 and float32)."""
    return images * channels * (WORKING_COPIES * height * width * 8 + image_size * image_size * 12)


def check_memory(where: str, estimate: MemoryEstimate, cfg: DataConfig) -> None:
    """Refuse when the estimated memory exceeds ``data.max_memory_mb``."""
    if estimate.total_bytes > cfg.max_memory_mb * MB:
        raise DataError(
            where,
            f"estimated memory {estimate.describe()}",
            f"at most {cfg.max_memory_mb} MB (data.max_memory_mb); use a smaller data.image_size or fewer "
            "records, or raise the limit",
        )


def small_test_warning(class_counts: Sequence[int], class_names: Sequence[str]) -> str | None:
    """A warning when some class of the test split has fewer than ``MIN_TEST_RECORDS_PER_CLASS``
    records (None otherwise): scores on it are too noisy to stand as a headline."""
    counts = [int(c) for c in class_counts]
    if not counts or min(counts) >= MIN_TEST_RECORDS_PER_CLASS:
        return None
    per_class = ", ".join(f"class '{n}': {c}" for n, c in zip(class_names, counts))
    return (
        f"the test split has {sum(counts)} records ({per_class}), below the minimum of "
        f"{MIN_TEST_RECORDS_PER_CLASS} per class: TSTR/TRTR scores on it are not reliable (use more records "
        "or a larger data.test_fraction)"
    )


def output_channels_bound(color: str, source_channels: int) -> int:
    """The most channels the loaded images can have: what the memory estimate assumes."""
    if color == "gray":
        return 1
    if color == "rgb":
        return 3
    return 3 if source_channels >= 3 else 1
