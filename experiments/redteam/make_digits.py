"""Write scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes) as a MedMNIST-format
``.npz`` that fedsynth's ``npz`` source reads: the real, offline image set of the attack study.

Usage: python experiments/redteam/make_digits.py OUT.npz [COUNT]
then:  fedsynth attack --out DIR --set data.source="npz" --set data.path="OUT.npz"

COUNT (default 100) takes a class-stratified subset: the batch-1 settings train one record per
round, so a hospital's whole data set takes as many rounds as it has records.

The digits are not medical images; they are real scans, which the phantom is not, and the imprint
attack only needs images. fedsynth resizes them to ``data.image_size`` (32 by default).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def main(out: Path, count: int = 100) -> None:
    digits = load_digits()
    per_class = [np.flatnonzero(digits.target == c) for c in range(10)]
    chosen = np.sort(np.concatenate([rows[: max(1, count // 10)] for rows in per_class]))
    images = np.round(digits.images[chosen] * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, images=images, labels=digits.target[chosen].astype(np.int64))
    print(f"{out}: {len(images)} images of 8x8, labels 0-9")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python experiments/redteam/make_digits.py OUT.npz [COUNT]")
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) == 3 else 100)
