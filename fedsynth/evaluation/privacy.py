"""Empirical privacy: distance to closest record, membership-inference attacks, Reality/Diversity Guarantees.

All distances are Euclidean, in a feature space given by the caller (pixel or embedding space, see
:mod:`fedsynth.evaluation.features`). "train" = the records the generator was trained on (all
hospitals pooled); "holdout" = real records of the same population the generator never saw.

Distance to closest record (DCR)
    For each synthetic record, the distance to its nearest training record; for each held-out
    record, the same (the baseline: how close a *new* real patient lies to the training data).
    Synthetic records much closer to the training data than held-out ones are (near-)copies.

Membership inference, distance attack (seed 000's "pairwise attack")
    The attacker holds a real record and the synthetic data set and guesses "was in training"
    when the record is close to some synthetic record: score = -(distance to nearest synthetic
    record). Members = training records, non-members = held-out records; the attack's ROC AUC is
    0.5 when the synthetic data carry no membership signal and 1.0 when every training record was
    copied. Also reported: TPR at 1% and 10% FPR, and the AUC per hospital (that hospital's
    records vs all held-out records).

Membership inference, density attack (seed 000's "distribution attack")
    Score = the number of synthetic records within radius rho of the record, rho = the median
    distance of held-out records to their nearest training record (the natural real-to-real gap).
    Clusters of synthetic records around one training record give it a high score.

Membership inference, distance-ratio attack (calibrated)
    Score = log d(x, H) - log d(x, S): how much closer the record lies to the synthetic data than
    to the held-out real records H (the record itself left out of H). Dividing by the distance to
    real neighbours cancels what makes a record far from everything (a noisy scanner, a rare
    phenotype), which the plain distance attack mistakes for (non-)membership.

Caveat for all attacks: held-out records come from the same hospitals and population, but a
partition with strong hospital or label skew, or hospitals with different scanners, can make
members and non-members differ in distribution; an AUC off 0.5 can come from that, not from
leakage. Per-hospital AUCs compare one hospital's records with *all* held-out records, so site
effects (e.g. a noisier scanner) move them in both directions; the ratio attack is the least
affected.

Reality Guarantee (RG) and Diversity Guarantee (DG) (seed 002), defined here as follows.
The held-out real records are split at random into two disjoint halves A and B.

- RG = median over synthetic s of d(s, A)  /  median over b in B of d(b, A),
  where d(x, A) is the distance to the nearest record of A. "How close do synthetic records lie to
  real data, compared with how close real records lie to other real data?" RG = 1: as realistic
  as real data; RG > 1: synthetic records lie off the real data (less realistic).
- DG = median over b in B of d(b, S')  /  median over b in B of d(b, A),
  with S' a random subset of the synthetic records of the same size as A (so both reference
  sets are equally dense). "Does every real record find a synthetic neighbour as close as a real
  one?" DG = 1: the synthetic data cover the real data as well as a real sample does; DG > 1:
  parts of the real distribution are missing (mode collapse, lost diversity).

Both compare synthetic data with records the generator never saw, so copies of training records
do not make them look better; copying is what DCR and the attacks measure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from fedsynth.evaluation.neighbours import knn, nn_distance, pairwise_chunks

#: Relative distance below which a synthetic record counts as an exact copy.
EXACT_COPY_TOL = 1e-6


def dcr(synthetic: np.ndarray, train: np.ndarray, holdout: np.ndarray) -> dict[str, Any]:
    """Distance to closest training record, synthetic vs held-out (see module docstring).

    ``share_below_holdout_p05``: share of synthetic records closer to the training data than the
    5% closest held-out records are (0.05 expected when synthetic records behave like new real
    patients). ``exact_copies``: synthetic records at distance ~0 from a training record.
    """
    syn_d = nn_distance(synthetic, train)
    hold_d = nn_distance(holdout, train)
    scale = float(np.median(hold_d)) if hold_d.size else 1.0
    p05 = float(np.quantile(hold_d, 0.05))
    return {
        "synthetic_median": float(np.median(syn_d)),
        "synthetic_p05": float(np.quantile(syn_d, 0.05)),
        "holdout_median": scale,
        "holdout_p05": p05,
        "median_ratio": float(np.median(syn_d) / scale) if scale > 0 else None,
        "share_below_holdout_p05": float(np.mean(syn_d < p05)),
        "exact_copies": int(np.sum(syn_d <= EXACT_COPY_TOL * max(scale, 1e-12))),
        "values": {"synthetic": syn_d, "holdout": hold_d},
    }


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr_levels: tuple[float, ...] = (0.01, 0.1)) -> dict[str, float]:
    """True-positive rate of the attack at fixed false-positive rates (interpolated on the ROC)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return {f"{level:g}": float(np.interp(level, fpr, tpr)) for level in fpr_levels}


def _attack_result(
    member_scores: np.ndarray, nonmember_scores: np.ndarray, member_groups: np.ndarray | None
) -> dict[str, Any]:
    labels = np.concatenate([np.ones(member_scores.size), np.zeros(nonmember_scores.size)])
    scores = np.concatenate([member_scores, nonmember_scores])
    out: dict[str, Any] = {
        "auc": float(roc_auc_score(labels, scores)),
        "tpr_at_fpr": tpr_at_fpr(labels, scores),
        "n_members": int(member_scores.size),
        "n_nonmembers": int(nonmember_scores.size),
    }
    if member_groups is not None:
        per: dict[str, float] = {}
        for g in np.unique(member_groups):
            m = member_scores[member_groups == g]
            lab = np.concatenate([np.ones(m.size), np.zeros(nonmember_scores.size)])
            per[str(g)] = float(roc_auc_score(lab, np.concatenate([m, nonmember_scores])))
        out["per_hospital_auc"] = per
    return out


def distance_attack(
    train: np.ndarray,
    holdout: np.ndarray,
    synthetic: np.ndarray,
    *,
    train_groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Membership inference with score = -(distance to the nearest synthetic record); returns AUC etc."""
    if train.shape[0] == 0 or holdout.shape[0] == 0:
        raise ValueError("the membership-inference attack needs members and non-members")
    member = -nn_distance(train, synthetic)
    nonmember = -nn_distance(holdout, synthetic)
    out = _attack_result(member, nonmember, train_groups)
    out["score"] = "minus the distance to the nearest synthetic record"
    out["values"] = {"members": member, "nonmembers": nonmember}
    return out


def ratio_attack(
    train: np.ndarray,
    holdout: np.ndarray,
    synthetic: np.ndarray,
    *,
    train_groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Membership inference with score = log d(x, holdout) - log d(x, synthetic) (see module docstring)."""
    if train.shape[0] == 0 or holdout.shape[0] < 2:
        raise ValueError("the ratio attack needs members and at least two non-members")
    eps = 1e-12
    member = np.log(nn_distance(train, holdout) + eps) - np.log(nn_distance(train, synthetic) + eps)
    nonmember = np.log(nn_distance(holdout, holdout, exclude_self=True) + eps) - np.log(
        nn_distance(holdout, synthetic) + eps
    )
    out = _attack_result(member, nonmember, train_groups)
    out["score"] = "log distance to the nearest held-out record minus log distance to the nearest synthetic record"
    out["values"] = {"members": member, "nonmembers": nonmember}
    return out


def density_attack(
    train: np.ndarray,
    holdout: np.ndarray,
    synthetic: np.ndarray,
    *,
    train_groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Membership inference with score = number of synthetic records within rho (see module docstring)."""
    rho = float(np.median(nn_distance(holdout, train)))

    def counts(x: np.ndarray) -> np.ndarray:
        out = np.zeros(x.shape[0], dtype=np.float64)
        for start, d in pairwise_chunks(x, synthetic):
            out[start : start + d.shape[0]] = (d <= rho).sum(axis=1)
        return out

    out = _attack_result(counts(train), counts(holdout), train_groups)
    out["score"] = "number of synthetic records within rho of the record"
    out["radius"] = rho
    return out


def reality_diversity(synthetic: np.ndarray, holdout: np.ndarray, *, seed: int) -> dict[str, Any]:
    """Reality and Diversity Guarantees against two disjoint halves A, B of the held-out records.

    See the module docstring for the definitions. Deterministic per seed. Returns ``rg``, ``dg``
    and the medians they are made of; ``rg``/``dg`` are None when there are fewer than 4
    held-out records or fewer synthetic records than |A|.
    """
    n = holdout.shape[0]
    if n < 4:
        return {"rg": None, "dg": None, "reason": f"{n} held-out records: need at least 4 to form A and B"}
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    a, b = holdout[perm[: n // 2]], holdout[perm[n // 2 :]]
    if synthetic.shape[0] < a.shape[0]:
        return {"rg": None, "dg": None, "reason": f"{synthetic.shape[0]} synthetic records: fewer than |A|"}
    s_sub = synthetic[np.sort(rng.choice(synthetic.shape[0], a.shape[0], replace=False))]
    real_gap = float(np.median(nn_distance(b, a)))
    syn_to_a = float(np.median(nn_distance(synthetic, a)))
    b_to_syn = float(np.median(nn_distance(b, s_sub)))
    ok = real_gap > 0
    return {
        "rg": syn_to_a / real_gap if ok else None,
        "dg": b_to_syn / real_gap if ok else None,
        "median_synthetic_to_a": syn_to_a,
        "median_b_to_synthetic": b_to_syn,
        "median_b_to_a": real_gap,
        "n_a": int(a.shape[0]),
        "n_b": int(b.shape[0]),
    }


def nearest_pairs(synthetic: np.ndarray, train: np.ndarray, top_k: int = 8) -> list[dict[str, Any]]:
    """The ``top_k`` synthetic records closest to a training record: (synthetic, train, distance)."""
    d, idx = knn(synthetic, train, 1)
    order = np.argsort(d[:, 0], kind="stable")[:top_k]
    return [{"synthetic": int(i), "train": int(idx[i, 0]), "distance": float(d[i, 0])} for i in order]
