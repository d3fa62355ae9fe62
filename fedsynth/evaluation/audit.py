"""What the report's outputs hold, in words: they are audit artefacts, not differentially private releases.

The evaluation compares synthetic data with the real records, so its outputs show real patients:
training and held-out images, clinical distributions, per-record scores, class counts, scores of
classifiers trained on real data. None of this is covered by the run's DP guarantee. A run folder
holds only DP releases at its top level; everything the report writes goes into ``DIR/audit/``,
which carries a README saying so, and every output repeats the notice (page banner,
``evaluation.json["audit_artefact"]``) so that a copied file still says what it is.
"""

from __future__ import annotations

from typing import Any

#: The notice at the top of report.html and in evaluation.json["audit_artefact"]["notice"].
NOTICE = (
    "AUDIT ARTEFACT: this page shows real patient records (training and held-out images, clinical "
    "distributions, per-record scores) computed without differential privacy. Keep it inside the data "
    "owners' walls; do not share it."
)

#: The notice at the top of compare.html (its numbers come from the runs' audit evaluations).
COMPARE_NOTICE = (
    "AUDIT ARTEFACT: this comparison shows statistics of real patient records (TRTR scores, "
    "membership-inference results, baselines on held-out records) computed without differential "
    "privacy. Keep it inside the data owners' walls; do not share it."
)

#: Real-data content of evaluation.json (and of the page built from it).
EVALUATION_CONTENTS = (
    "record counts per hospital, per class and per role (training, held-out), computed on the real data",
    "TRTR scores: classifiers trained on the real training records (pooled and per hospital)",
    "statistics of the real records: per-column means and standard deviations, correlation matrices, "
    "clinical <-> image associations",
    "baselines computed on real records: held-out vs training fidelity, memorization and distances",
    "membership-inference results, pooled and per hospital, and indices of the training records "
    "closest to synthetic records",
)

#: Real-data content of report.html beyond evaluation.json.
PAGE_CONTENTS = (
    "real training images (sample grids, closest training image of each near-copy)",
    "distributions of the real clinical columns and 2-D embeddings of the real training records",
    "per-record scores of real records: distances to the synthetic data, attack scores, correlations",
)

#: Content of the side-by-side picture.
SIDE_BY_SIDE_CONTENTS = (
    "per class: the mean image of the real training records and some of them, beside the mean "
    "synthetic image and synthetic samples",
)

#: Content of the per-record arrays file (written only on request).
ARRAYS_CONTENTS = (
    "real images (sample grids, closest training image of each near-copy)",
    "every training record's clinical row, label and hospital",
    "per-record distances, correlations and membership-inference scores of training and held-out records",
    "2-D embedding coordinates of the real training records",
)


#: Where the red team's scores of a malicious server's reconstructions go (they show real records).
ATTACK_SCORES_DIR = "audit/attack"

#: Content of that folder.
ATTACK_SCORES_CONTENTS = {
    "scores.json": "per target: every true record's distance to its closest reconstruction, ReRo, exact counts",
    "records.csv": "one row per true record and target: hospital, record index, distance, round",
    "cdf.png": "the distribution of those distances",
    "pairs-<target>.png": "real training images beside the server's reconstructions of them",
}


def evaluation_notice(folder: str) -> dict[str, Any]:
    """The ``audit_artefact`` block of evaluation.json."""
    return {
        "notice": NOTICE,
        "differentially_private": False,
        "folder": folder,
        "contains": list(EVALUATION_CONTENTS),
    }


def readme(files: dict[str, tuple[str, ...] | str], written_by: str = "`fedsynth report`") -> str:
    """README.txt of an audit folder: what it is, and what each file in it holds."""
    lines = [
        "AUDIT ARTEFACT - NOT A DIFFERENTIALLY PRIVATE RELEASE",
        "",
        f"This folder was written by {written_by}. It holds real patient records and statistics",
        "computed on them without differential privacy: training and held-out images, per-record",
        "scores, clinical distributions, class counts, and TRTR scores (classifiers trained on the",
        "real records). The run's privacy guarantee does not cover anything in here.",
        "",
        "Keep this folder inside the data owners' walls: do not share, publish or upload it, and do",
        "not copy it out together with the run's released outputs (the synthetic data and model).",
        "",
        "Files:",
    ]
    for name, what in files.items():
        items = (what,) if isinstance(what, str) else what
        lines.append(f"  {name}")
        lines.extend(f"    - {item}" for item in items)
    return "\n".join(lines) + "\n"
