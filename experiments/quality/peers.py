"""Fit a peer DP table synthesizer (MST from the dpmm package) and write its synthetic table.

Runs in its own environment (dpmm pins older numpy, pandas and scikit-learn than fedsynth's):
``python -m venv .venv-peers && .venv-peers/bin/pip install dpmm==0.1.9``. The quality sweep
(``sweep.py --peers-python .venv-peers/bin/python``) writes the training split and the public
column bounds, calls this script, and scores what it writes with fedsynth's own TSTR protocol.

Usage: python peers.py TRAIN_CSV DOMAIN_JSON EPSILON DELTA SEED NUM OUT_CSV

The label is one more categorical column of the table; MST spends 90% of epsilon on its
marginals and 10% on the binning (dpmm's priv-tree binner on the public bounds), so the total is
epsilon.
"""

from __future__ import annotations

import json
import sys

import pandas as pd
from dpmm.pipelines.mst import MSTPipeline


def main(train_csv: str, domain_json: str, epsilon: float, delta: float, seed: int, num: int, out_csv: str) -> None:
    table = pd.read_csv(train_csv)
    domain = json.loads(open(domain_json).read())
    pipeline = MSTPipeline(epsilon=0.9 * epsilon, delta=delta, proc_epsilon=0.1 * epsilon, n_jobs=1)
    pipeline.fit(table, domain=domain, random_state=seed)
    pipeline.generate(n_records=num, random_state=seed).to_csv(out_csv, index=False)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], float(a[2]), float(a[3]), int(a[4]), int(a[5]), a[6])
