"""Evaluate a run folder and render its self-contained HTML report, both into the audit folder DIR/audit/.

The evaluation compares the synthetic data with the real records, so everything it writes holds
real patients' data without differential privacy (see :mod:`fedsynth.evaluation.audit`). It goes
into DIR/audit/, never next to the run's DP releases:

- DIR/audit/README.txt: says the folder is an audit artefact and what each file holds;
- DIR/audit/evaluation.json: all numbers, with a flat ``summary`` block (what the top of the
  report shows), ``verdicts``, ``methods`` (how each summary number was computed) and the
  ``audit_artefact`` notice;
- DIR/audit/report.html: one file, images embedded as base64 PNG, no external scripts, styles or
  fonts, an audit banner at the top;
- DIR/audit/real-records-arrays.npz: the per-record values and real images the plots need, only
  when asked for (``save_arrays``), so that the page can be re-rendered without re-evaluating.

``evaluate_run(DIR)`` re-derives the run's real data, loads DIR/synthetic/samples.npz and computes
every metric of this package; ``render_report(DIR)`` writes the page (evaluating first unless given
the evaluation or told to reuse the saved files).

Roles of the data: "train" = the hospitals' records pooled (what the generator learned from),
"holdout" = the held-out real test split (never trained on), "synthetic" = DIR/synthetic.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from fedsynth.data.guards import small_test_warning
from fedsynth.data.records import Dataset
from fedsynth.errors import DataError
from fedsynth.evaluation import associations, audit, fidelity, memorization, plots, privacy, tabular, utility
from fedsynth.evaluation.attack_section import attack_images, attack_section
from fedsynth.evaluation.budget import budget_verdict, privacy_budget
from fedsynth.evaluation.embedding import embedding_view
from fedsynth.evaluation.features import PIXEL_DESCRIPTION, fit_embedding, pixel_space
from fedsynth.evaluation.run import RealData, RunData, load_run
from fedsynth.evaluation.sample_size import evaluation_size_verdict
from fedsynth.progress import PhaseProgress

#: The audit folder inside a run folder: everything the report writes goes here.
AUDIT_DIR = "audit"
EVALUATION_JSON = "evaluation.json"
REPORT_HTML = "report.html"
README_TXT = "README.txt"
#: Per-record values and real images (written only when asked for: ``save_arrays``).
ARRAYS_NPZ = "real-records-arrays.npz"
#: Real and synthetic samples and class means per class, side by side.
SIDE_BY_SIDE_PNG = "samples-side-by-side.png"
#: Where older fedsynth versions wrote report outputs (top of the run folder, next to the releases).
LEGACY_FILES = ("evaluation.json", "evaluation_arrays.npz", "report.html")

#: Verdict thresholds (documented in the report's "How to read the verdicts").
MIA_PASS, MIA_WARN = 0.55, 0.65
UTILITY_GOOD, UTILITY_FAIR = 0.8, 0.5
FIDELITY_GOOD, FIDELITY_FAIR = 0.8, 0.5
#: Synthetic images above the holdout's 99th percentile of residual max correlation: more is a warning.
EXCESS_P99_WARN = 0.05
#: Excess share of near-copies (synthetic minus held-out share above 0.95) above which memorization
#: fails (residual correlation) or warns (raw correlation).
COPY_FAIL = 0.01
PAIRS_SHOWN = 8
#: Fewest records per role (training, held-out, synthetic) the evaluation accepts.
MIN_RECORDS = 10
GRID_PER_CLASS = 6

#: How each summary number was computed (shown in the report and stored in evaluation.json).
METHODS: dict[str, str] = {
    "n_hospitals": "number of hospitals in the federation",
    "n_train": "training records: all hospitals' records pooled",
    "n_holdout": "held-out real records (the federation's test split; no hospital trained on them)",
    "n_synthetic": "records in synthetic/samples.npz",
    "private": "privacy.json 'private': every hospital trained with DP-SGD",
    "privacy_guarantee": (
        "level of the run's privacy guarantee (fedsynth.privacy.label): 'dp' = DP-SGD with secret noise "
        "and max epsilon at most the meaningful threshold; 'none' = DP-SGD ran but the epsilon is above "
        "the threshold or the noise was reproducible from a seed; 'not-private' = trained without noise"
    ),
    "epsilon_max": (
        "largest epsilon over hospitals (privacy.json, computed by the run's accountant from each "
        "hospital's full mechanism history); null = not private"
    ),
    "delta": "delta of the (epsilon, delta) guarantee (privacy.json)",
    "tstr_mcc": (
        "train on synthetic, test on real: Matthews correlation on the holdout of the classifier selected"
        " on a validation split of the synthetic data (logistic regression and random forest grids)"
    ),
    "trtr_mcc": "train on real, test on real: the same protocol trained on the pooled training records",
    "tstr_auroc": "AUROC (binary, or macro one-vs-rest) of the TSTR classifier on the holdout",
    "trtr_auroc": "AUROC of the TRTR classifier on the holdout",
    "tstr_balanced_accuracy": "balanced accuracy of the TSTR classifier on the holdout",
    "trtr_balanced_accuracy": "balanced accuracy of the TRTR classifier on the holdout",
    "utility_ratio": (
        "tstr_mcc / trtr_mcc (1 = synthetic data as useful as the real training data); null when trtr_mcc <= 0"
    ),
    "frechet_distance": (
        "Frechet distance between Gaussians fitted to training and synthetic records in the embedding "
        "space (0 = same mean and covariance)"
    ),
    "frechet_distance_baseline": (
        "the same between training and holdout records: what two real samples of the population score "
        "(sampling noise floor)"
    ),
    "precision": ("share of synthetic records inside a real k-NN ball (k=5, Naeem et al. 2020), embedding space"),
    "recall": "share of real training records inside a synthetic k-NN ball (k=5), embedding space",
    "density": ("mean number of real k-NN balls containing a synthetic record, divided by k (about 1 for real data)"),
    "coverage": "share of real training records whose k-NN ball contains a synthetic record",
    "precision_baseline": (
        "precision of the held-out real records against the training records (what real data scores)"
    ),
    "recall_baseline": "recall of the held-out real records against the training records",
    "marginal_wasserstein_mean": (
        "mean over numeric columns of the 1-Wasserstein distance between training and synthetic values "
        "scaled to [0, 1] by the public bounds"
    ),
    "marginal_tv_mean": ("mean over categorical columns of the total variation distance of category frequencies"),
    "correlation_mean_abs_diff": (
        "mean absolute difference between the Pearson correlation matrices (columns + label) of training "
        "and synthetic data, off-diagonal entries"
    ),
    "association_kept_share": (
        "phantom: share of the phantom's known clinical->image associations kept by the synthetic data "
        "(expected sign and at least half the real strength)"
    ),
    "association_sign_agreement": (
        "share of clinical-variable x image-feature pairs with |Spearman| >= 0.1 in the training data "
        "whose synthetic correlation has the same sign"
    ),
    "max_corr_median": ("median over synthetic images of the maximum Pearson correlation to any training image"),
    "max_corr_holdout_median": "the same for held-out real images (baseline: similarity of new patients)",
    "share_above_095": (
        "share of synthetic images whose maximum Pearson correlation to a training image exceeds 0.95 (near-copies)"
    ),
    "holdout_share_above_095": (
        "the same share for held-out real images (new patients): aligned scans share their anatomy, so "
        "raw correlations are high by nature"
    ),
    "max_corr_residual_median": (
        "median maximum Pearson correlation after subtracting the mean training image from every image "
        "(removes the shared anatomy template; copies keep r = 1)"
    ),
    "max_corr_residual_holdout_median": "the same for held-out real images",
    "share_above_095_residual": "share of synthetic images whose residual maximum correlation exceeds 0.95",
    "holdout_share_above_095_residual": "the same share for held-out real images",
    "exceeds_holdout_p99": (
        "share of synthetic images whose residual max correlation exceeds the 99th percentile of the "
        "held-out images' (about 0.01 when synthetic images behave like new patients)"
    ),
    "dcr_ratio_pixel": (
        "median distance of synthetic records to their closest training record divided by the same median"
        " for held-out records, pixel space (< 1: synthetic closer to training than new patients)"
    ),
    "dcr_ratio_embedding": "the same ratio in the embedding space",
    "mia_auc_pixel": (
        "membership inference (members = training, non-members = holdout), score = -distance to the "
        "nearest synthetic record, pixel space: ROC AUC (0.5 = no signal)"
    ),
    "mia_auc_embedding": "the same attack in the embedding space",
    "ratio_mia_auc_pixel": (
        "membership inference with score = log distance to the nearest held-out record minus log distance "
        "to the nearest synthetic record (calibrated for records far from everything), pixel space: ROC AUC"
    ),
    "ratio_mia_auc_embedding": "the same calibrated attack in the embedding space",
    "density_mia_auc": (
        "membership inference with score = number of synthetic records within the median holdout->train "
        "nearest-neighbour distance (clusters around a real record), embedding space"
    ),
    "reality_guarantee": (
        "RG = median NN distance synthetic->A / median NN distance B->A, A and B disjoint random halves "
        "of the holdout, embedding space (1 = as close to real data as real data are; > 1 less real)"
    ),
    "diversity_guarantee": (
        "DG = median NN distance B->S' / median NN distance B->A, S' a random synthetic subset of size "
        "|A|, embedding space (1 = real data covered as well as by a real sample; > 1 missing modes)"
    ),
    "attack": (
        "what a malicious server recovered from the hospitals' updates (DIR/attack/, scored against the "
        "true records: fedsynth.evaluation.attack_section), in one line; 'no attack run' when the run "
        "folder has no attack/"
    ),
}


# ------------------------------------------------------------------------------------------------
# JSON
# ------------------------------------------------------------------------------------------------


def clean_json(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/Inf to None, tuple keys to strings."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _pop_values(d: dict[str, Any], prefix: str, arrays: dict[str, np.ndarray]) -> None:
    """Move the per-record arrays under ``d['values']`` into ``arrays`` (they do not go to JSON)."""
    for key, val in d.pop("values", {}).items():
        arrays[f"{prefix}_{key}"] = np.asarray(val)


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------


def _per_class_fidelity(
    emb_train: np.ndarray,
    y_train: np.ndarray,
    emb_syn: np.ndarray,
    y_syn: np.ndarray,
    class_names: tuple,
    seed: int,
) -> list[dict[str, Any]]:
    out = []
    for c, name in enumerate(class_names):
        r, s = emb_train[y_train == c], emb_syn[y_syn == c]
        entry: dict[str, Any] = {"class": name, "n_train": int(r.shape[0]), "n_synthetic": int(s.shape[0])}
        if r.shape[0] > fidelity.PRDC_K and s.shape[0] > fidelity.PRDC_K:
            entry.update(fidelity.fidelity_metrics(r, s, seed=seed))
        else:
            entry["reason"] = f"fewer than {fidelity.PRDC_K + 1} records on one side"
        out.append(entry)
    return out


def _class_means(ds: Dataset) -> np.ndarray:
    """(K, C, H, W) mean image of every class (zeros for a class without records)."""
    assert ds.images is not None
    out = np.zeros((ds.schema.num_classes, *ds.images.shape[1:]), dtype=np.float32)
    for c in range(ds.schema.num_classes):
        members = ds.labels == c
        if members.any():
            out[c] = ds.images[members].mean(axis=0)
    return out


def _class_mean_distances(train: Dataset, holdout: Dataset, syn: Dataset) -> dict[str, Any]:
    """Per class: mean absolute pixel difference between the synthetic and the training class mean
    image, next to the same between held-out and training records (sampling noise of real data),
    and the correlation of the two mean images over pixels."""
    real, hold, synthetic = _class_means(train), _class_means(holdout), _class_means(syn)
    rows = []
    for c, name in enumerate(train.schema.class_names):
        rows.append(
            {
                "class": name,
                "synthetic_vs_train": float(np.abs(synthetic[c] - real[c]).mean()),
                "holdout_vs_train": float(np.abs(hold[c] - real[c]).mean()),
                "correlation": float(np.corrcoef(synthetic[c].ravel(), real[c].ravel())[0, 1]),
            }
        )
    return {"what": "mean absolute pixel difference of class mean images (pixel values in [0, 1])", "per_class": rows}


def _nearest_attribution(arg: np.ndarray, hospital_of: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Which hospitals' records are the nearest training records of synthetic images (vs their share)."""
    n_h = len(names)
    near = np.bincount(hospital_of[arg], minlength=n_h) / max(1, arg.size)
    share = np.bincount(hospital_of, minlength=n_h) / max(1, hospital_of.size)
    return {names[h]: {"nearest_share": float(near[h]), "training_share": float(share[h])} for h in range(n_h)}


def _verdicts(
    s: dict[str, Any],
    has_images: bool,
    budget: dict[str, Any],
    attack: dict[str, Any] | None = None,
    small_test: str | None = None,
) -> dict[str, dict[str, str]]:
    """Pass/warn/fail style verdicts with the reason, from the summary numbers (and the attack section).

    ``small_test``: the warning that the held-out split is under the minimum per class; the
    utility verdict then shows it instead of a score (``evaluation_size`` says it too)."""
    v: dict[str, dict[str, str]] = {}
    if has_images and s.get("share_above_095_residual") is not None:
        resid_excess = s["share_above_095_residual"] - (s.get("holdout_share_above_095_residual") or 0.0)
        raw_excess = s["share_above_095"] - (s.get("holdout_share_above_095") or 0.0)
        beyond = s.get("exceeds_holdout_p99") or 0.0
        detail = (
            f"residual r > 0.95: {s['share_above_095_residual']:.1%} of synthetic vs "
            f"{s.get('holdout_share_above_095_residual') or 0.0:.1%} of held-out images; raw r > 0.95: "
            f"{s['share_above_095']:.1%} vs {s.get('holdout_share_above_095') or 0.0:.1%}"
        )
        if resid_excess > COPY_FAIL:
            v["memorization"] = {"level": "fail", "text": f"near-copies of training images. {detail}"}
        elif raw_excess > COPY_FAIL or beyond > EXCESS_P99_WARN:
            v["memorization"] = {
                "level": "warn",
                "text": f"{beyond:.1%} of synthetic images exceed the held-out 99th percentile. {detail}",
            }
        else:
            v["memorization"] = {"level": "pass", "text": f"no more near-copies than new patients. {detail}"}
    else:
        v["memorization"] = {"level": "n/a", "text": "no images: see distance to closest record"}
    attack_keys = (
        "mia_auc_pixel",
        "mia_auc_embedding",
        "ratio_mia_auc_pixel",
        "ratio_mia_auc_embedding",
        "density_mia_auc",
    )
    aucs = [s[k] for k in attack_keys if s.get(k) is not None]
    if aucs:
        worst = max(aucs)
        level = "pass" if worst <= MIA_PASS else "warn" if worst <= MIA_WARN else "fail"
        v["membership"] = {"level": level, "text": f"strongest attack AUC {worst:.3f} (0.5 = chance)"}
    else:
        v["membership"] = {"level": "n/a", "text": "attack not computed"}
    ratio = s.get("utility_ratio")
    if small_test:
        v["utility"] = {"level": "warn", "text": f"not scored reliably: {small_test}"}
    elif ratio is None:
        v["utility"] = {"level": "n/a", "text": "real-data classifier has MCC <= 0: no reference"}
    else:
        level = "good" if ratio >= UTILITY_GOOD else "fair" if ratio >= UTILITY_FAIR else "poor"
        v["utility"] = {"level": level, "text": f"TSTR reaches {ratio:.0%} of the real-data MCC"}
    p, r = s.get("precision"), s.get("recall")
    pb, rb = s.get("precision_baseline"), s.get("recall_baseline")
    if None in (p, r, pb, rb) or not pb or not rb:
        v["fidelity"] = {"level": "n/a", "text": "not enough records"}
    else:
        rel = min(p / pb, r / rb)
        level = "good" if rel >= FIDELITY_GOOD else "fair" if rel >= FIDELITY_FAIR else "poor"
        v["fidelity"] = {
            "level": level,
            "text": f"precision {p:.2f} / recall {r:.2f} vs {pb:.2f} / {rb:.2f} for real holdout data",
        }
    v["evaluation_size"] = evaluation_size_verdict(small_test)
    v["privacy_budget"] = budget_verdict(budget)
    if attack is not None:
        v["reconstruction"] = _reconstruction_verdict(attack)
    return v


def _reconstruction_verdict(attack: dict[str, Any]) -> dict[str, str]:
    """fail: a record recovered exactly; warn: one within 0.1; pass: none (or every site refused)."""
    targets = attack.get("targets") or {}
    if not targets:
        refused = bool(attack.get("refusals")) and not attack.get("reconstruction_files")
        return {"level": "pass" if refused else "n/a", "text": attack["finding"]}
    exact = sum(int(t.get("exact") or 0) for t in targets.values())
    within = sum(int(t.get("within_01") or 0) for t in targets.values())
    level = "fail" if exact else "warn" if within else "pass"
    return {"level": level, "text": attack["finding"]}


def evaluate(
    run: RunData, *, tsne: bool = True, local_utility: bool = True, progress: PhaseProgress | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Compute every metric for a loaded run: (evaluation dict, arrays for the plots).

    Its six steps (feature spaces, utility, fidelity, memorization, privacy, 2-D views) are shown
    on ``progress`` when given (:class:`~fedsynth.progress.PhaseProgress`, a terminal only).

    BLAS and OpenMP run single-threaded: the work is many small problems, and on a shared machine
    spinning OpenMP threads made t-SNE 10x slower than one thread.
    """
    with threadpool_limits(limits=1):
        return _evaluate(run, tsne=tsne, local_utility=local_utility, progress=progress or PhaseProgress(enabled=False))


def _evaluate(
    run: RunData, *, tsne: bool, local_utility: bool, progress: PhaseProgress
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The body of :func:`evaluate`."""
    seed = run.seed
    train, holdout, syn = run.train, run.holdout, run.synthetic
    for role, ds in (("training", train), ("held-out", holdout), ("synthetic", syn)):
        if len(ds) < MIN_RECORDS:
            raise DataError(
                f"{run.run_dir} ({role} data)",
                f"{len(ds)} records",
                f"at least {MIN_RECORDS} records for nearest-neighbour metrics and classifiers",
            )
    has_images = train.images is not None
    arrays: dict[str, np.ndarray] = {}
    notes = list(run.notes)

    # feature spaces
    progress.phase("report", 6, "feature spaces")
    space = fit_embedding(holdout, seed=seed)
    emb_train, emb_hold, emb_syn = space.transform(train), space.transform(holdout), space.transform(syn)
    pix_train, pix_hold, pix_syn = pixel_space(train), pixel_space(holdout), pixel_space(syn)

    # utility
    progress.advance("utility")
    tstr = utility.train_on_test_on(syn, holdout, seed=seed)
    trtr = utility.train_on_test_on(train, holdout, seed=seed)
    util: dict[str, Any] = {"tstr": tstr, "trtr": trtr, "test_data": "held-out real split"}
    if local_utility and len(run.hospital_names) > 1:
        util["local_trtr"] = {
            name: utility.train_on_test_on(train.subset(np.flatnonzero(run.hospital_of == h)), holdout, seed=seed)
            for h, name in enumerate(run.hospital_names)
        }
    if run.summary is not None:
        util["run_summary"] = {k: run.summary.get(k) for k in ("tstr", "trtr") if k in run.summary}

    # fidelity
    progress.advance("fidelity")
    fid = fidelity.fidelity_metrics(emb_train, emb_syn, seed=seed)
    fid_base = fidelity.fidelity_metrics(emb_train, emb_hold, seed=seed)
    fid_section = {
        "space": "embedding",
        "synthetic_vs_train": fid,
        "holdout_vs_train": fid_base,
        "per_class": _per_class_fidelity(emb_train, train.labels, emb_syn, syn.labels, run.schema.class_names, seed),
        "synthetic_class_counts": syn.class_counts().tolist(),
        "train_class_counts": train.class_counts().tolist(),
    }
    tab = tabular.tabular_fidelity(train, syn)
    if tab.get("available"):
        base = tabular.tabular_fidelity(train, holdout)
        tab["baseline"] = {
            "mean_wasserstein_numeric": base["mean_wasserstein_numeric"],
            "mean_tv_categorical": base["mean_tv_categorical"],
            "correlation_mean_abs_diff": base["correlation"]["mean_abs_diff"],
            "what": "the same metrics between training and held-out real data",
        }
    assoc = associations.association_fidelity(train, syn)

    # memorization
    progress.advance("memorization")
    memo: dict[str, Any]
    if has_images:
        assert train.images is not None and syn.images is not None and holdout.images is not None
        memo = memorization.memorization_metrics(syn.images, train.images, holdout.images, top_k=PAIRS_SHOWN)
        template = train.images.mean(axis=0, keepdims=True)
        resid = memorization.memorization_metrics(
            syn.images, train.images, holdout.images, top_k=PAIRS_SHOWN, template=template
        )
        memo["nearest_hospital"] = _nearest_attribution(
            resid["values"]["synthetic_arg"], run.hospital_of, run.hospital_names
        )
        for name, m in (("memo", memo), ("memo_residual", resid)):
            pairs = m["top_pairs"]
            arrays[f"{name}_pair_synthetic"] = syn.images[[p["synthetic"] for p in pairs]]
            arrays[f"{name}_pair_train"] = train.images[[p["train"] for p in pairs]]
            _pop_values(m, name, arrays)
        memo["residual"] = resid
    else:
        memo = {"available": False, "reason": "the data set has no images"}

    # privacy
    progress.advance("privacy")
    priv: dict[str, Any] = {"spaces": {"pixel": PIXEL_DESCRIPTION, "embedding": space.describe()["description"]}}
    for name, (tr, ho, sy) in {
        "pixel": (pix_train, pix_hold, pix_syn),
        "embedding": (emb_train, emb_hold, emb_syn),
    }.items():
        d = privacy.dcr(sy, tr, ho)
        _pop_values(d, f"dcr_{name}", arrays)
        groups = np.asarray(run.hospital_names)[run.hospital_of]
        mia = privacy.distance_attack(tr, ho, sy, train_groups=groups)
        _pop_values(mia, f"mia_{name}", arrays)
        ratio = privacy.ratio_attack(tr, ho, sy, train_groups=groups) if len(holdout) >= 2 else None
        if ratio is not None:
            _pop_values(ratio, f"ratio_{name}", arrays)
        priv[name] = {
            "dcr": d,
            "distance_attack": mia,
            "ratio_attack": ratio,
            "reality_diversity": privacy.reality_diversity(sy, ho, seed=seed),
        }
    priv["embedding"]["density_attack"] = privacy.density_attack(
        emb_train, emb_hold, emb_syn, train_groups=np.asarray(run.hospital_names)[run.hospital_of]
    )
    close = privacy.nearest_pairs(pix_syn, pix_train, top_k=PAIRS_SHOWN)
    priv["closest_pairs_pixel"] = close
    if has_images:
        assert syn.images is not None and train.images is not None
        arrays["dcr_pair_synthetic"] = syn.images[[p["synthetic"] for p in close]]
        arrays["dcr_pair_train"] = train.images[[p["train"] for p in close]]

    # 2-D views
    progress.advance("2-D views")
    view = embedding_view(emb_train, emb_syn, seed=seed, tsne=tsne)
    arrays["pca_real"], arrays["pca_synthetic"] = view["pca"]["real"], view["pca"]["synthetic"]
    if "tsne" in view:
        arrays["tsne_real"], arrays["tsne_synthetic"] = view["tsne"]["real"], view["tsne"]["synthetic"]
        arrays["tsne_real_index"], arrays["tsne_synthetic_index"] = (
            view["tsne"]["real_index"],
            view["tsne"]["synthetic_index"],
        )
    arrays["train_labels"], arrays["train_hospital"] = train.labels, run.hospital_of
    arrays["synthetic_labels"] = syn.labels
    if train.clinical is not None and syn.clinical is not None:
        arrays["train_clinical"], arrays["synthetic_clinical"] = train.clinical, syn.clinical
    embedding_section = {
        "methods": ["pca", *(["tsne"] if "tsne" in view else [])],
        "pca_explained_variance": view["pca"]["explained_variance"],
        "space": "embedding",
        "why_not_umap": "umap-learn needs numba/llvmlite (JIT start-up, numpy pins); t-SNE gives the same "
        "neighbourhood view with scikit-learn",
    }
    if has_images:
        assert train.images is not None and syn.images is not None
        rng = np.random.default_rng(seed)
        for role, ds in (("real", train), ("synthetic", syn)):
            idx = []
            for c in range(run.schema.num_classes):
                members = np.flatnonzero(ds.labels == c)
                idx.extend(rng.choice(members, min(GRID_PER_CLASS, members.size), replace=False).tolist())
            assert ds.images is not None
            arrays[f"grid_{role}_images"] = ds.images[np.asarray(idx, dtype=np.int64)]
            arrays[f"grid_{role}_labels"] = ds.labels[np.asarray(idx, dtype=np.int64)]
        arrays["class_mean_real"] = _class_means(train)
        arrays["class_mean_synthetic"] = _class_means(syn)
        fid_section["class_means"] = _class_mean_distances(train, holdout, syn)

    attack = attack_section(run.run_dir)
    if attack is not None:
        arrays.update(attack_images(run.run_dir, attack))

    budget = privacy_budget(run.privacy)
    if budget.get("note"):
        notes.append(budget["note"])
    summary = _summary(run, budget, util, fid, fid_base, tab, assoc, memo, priv, attack)
    small_test = small_test_warning(tstr["test_class_counts"], run.schema.class_names)
    if small_test:
        notes.append(small_test)
    evaluation = {
        "audit_artefact": audit.evaluation_notice(AUDIT_DIR),
        "run_dir": str(run.run_dir),
        "seed": seed,
        "summary": summary,
        "verdicts": _verdicts(summary, has_images, budget, attack, small_test),
        "data": {
            "n_train": len(train),
            "n_holdout": len(holdout),
            "n_synthetic": len(syn),
            "hospitals": {name: int(np.sum(run.hospital_of == h)) for h, name in enumerate(run.hospital_names)},
            "class_names": list(run.schema.class_names),
            "has_images": has_images,
            "has_table": train.clinical is not None,
            "image_shape": list(run.schema.image_shape) if run.schema.image_shape else None,
            "bounds_source": run.schema.bounds_source,
            "schema": run.schema.to_dict(),
        },
        "spaces": {"embedding": space.describe(), "pixel": PIXEL_DESCRIPTION},
        "privacy_budget": budget,
        "utility": util,
        "fidelity": fid_section,
        "tabular": tab,
        "associations": assoc,
        "memorization": memo,
        "privacy": priv,
        "embedding": embedding_section,
        **({"attack": attack} if attack is not None else {}),
        "methods": METHODS,
        "notes": notes,
    }
    progress.advance()
    return clean_json(evaluation), arrays


def _summary(
    run: RunData,
    budget: dict[str, Any],
    util: dict[str, Any],
    fid: dict[str, Any],
    fid_base: dict[str, Any],
    tab: dict[str, Any],
    assoc: dict[str, Any],
    memo: dict[str, Any],
    priv: dict[str, Any],
    attack: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The flat block shown at the top of the report (every key documented in METHODS)."""
    tstr, trtr = util["tstr"], util["trtr"]
    ratio = None
    if tstr["mcc"] is not None and trtr["mcc"] is not None and trtr["mcc"] > 0:
        ratio = tstr["mcc"] / trtr["mcc"]
    emb, pix = priv["embedding"], priv["pixel"]
    resid: dict[str, Any] = memo.get("residual", {})
    s: dict[str, Any] = {
        "n_hospitals": len(run.hospital_names),
        "n_train": len(run.train),
        "n_holdout": len(run.holdout),
        "n_synthetic": len(run.synthetic),
        "private": budget.get("private"),
        "privacy_guarantee": (budget.get("guarantee") or {}).get("level"),
        "epsilon_max": budget.get("epsilon_max"),
        "delta": budget.get("delta"),
        "tstr_mcc": tstr["mcc"],
        "trtr_mcc": trtr["mcc"],
        "tstr_auroc": tstr["auroc"],
        "trtr_auroc": trtr["auroc"],
        "tstr_balanced_accuracy": tstr["balanced_accuracy"],
        "trtr_balanced_accuracy": trtr["balanced_accuracy"],
        "utility_ratio": ratio,
        "frechet_distance": fid["frechet_distance"],
        "frechet_distance_baseline": fid_base["frechet_distance"],
        "precision": fid["precision"],
        "recall": fid["recall"],
        "density": fid["density"],
        "coverage": fid["coverage"],
        "precision_baseline": fid_base["precision"],
        "recall_baseline": fid_base["recall"],
        "marginal_wasserstein_mean": tab.get("mean_wasserstein_numeric"),
        "marginal_tv_mean": tab.get("mean_tv_categorical"),
        "correlation_mean_abs_diff": tab["correlation"]["mean_abs_diff"] if tab.get("available") else None,
        "association_kept_share": assoc.get("kept_share"),
        "association_sign_agreement": assoc.get("sign_agreement"),
        "max_corr_median": memo["synthetic"]["median"] if "synthetic" in memo else None,
        "max_corr_holdout_median": memo["holdout"]["median"] if "holdout" in memo else None,
        "share_above_095": memo.get("share_above"),
        "holdout_share_above_095": memo.get("holdout_share_above"),
        "max_corr_residual_median": resid["synthetic"]["median"] if "synthetic" in resid else None,
        "max_corr_residual_holdout_median": resid["holdout"]["median"] if "holdout" in resid else None,
        "share_above_095_residual": resid.get("share_above"),
        "holdout_share_above_095_residual": resid.get("holdout_share_above"),
        "exceeds_holdout_p99": resid.get("exceeds_holdout_p99"),
        "dcr_ratio_pixel": pix["dcr"]["median_ratio"],
        "dcr_ratio_embedding": emb["dcr"]["median_ratio"],
        "mia_auc_pixel": pix["distance_attack"]["auc"],
        "mia_auc_embedding": emb["distance_attack"]["auc"],
        "ratio_mia_auc_pixel": pix["ratio_attack"]["auc"] if pix.get("ratio_attack") else None,
        "ratio_mia_auc_embedding": emb["ratio_attack"]["auc"] if emb.get("ratio_attack") else None,
        "density_mia_auc": emb["density_attack"]["auc"],
        "reality_guarantee": emb["reality_diversity"]["rg"],
        "diversity_guarantee": emb["reality_diversity"]["dg"],
        "attack": attack["finding"] if attack is not None else "no attack run",
    }
    for hid, h in budget.get("hospitals", {}).items():
        s[f"epsilon_hospital_{hid}"] = h["epsilon"]
    return s


# ------------------------------------------------------------------------------------------------
# Run folder I/O: everything goes into DIR/audit/
# ------------------------------------------------------------------------------------------------


def audit_dir(run_dir: Path) -> Path:
    """The audit folder of ``run_dir`` (not created)."""
    return Path(run_dir) / AUDIT_DIR


def legacy_files(run_dir: Path) -> list[Path]:
    """Report outputs an older fedsynth left at the top of ``run_dir``, next to the DP releases.

    They hold real records (evaluation_arrays.npz: raw clinical rows, labels, images) and must be
    deleted or moved into the audit folder; fedsynth never deletes them itself.
    """
    return [Path(run_dir) / name for name in LEGACY_FILES if (Path(run_dir) / name).exists()]


def _open_audit_dir(run_dir: Path) -> Path:
    """Create DIR/audit/ with its README (rewritten every time, so it always describes the folder)."""
    folder = audit_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        EVALUATION_JSON: audit.EVALUATION_CONTENTS,
        REPORT_HTML: ("everything in evaluation.json", *audit.PAGE_CONTENTS),
        f"{ARRAYS_NPZ} (only after `fedsynth report --save-arrays`)": audit.ARRAYS_CONTENTS,
        f"{SIDE_BY_SIDE_PNG} (image data)": audit.SIDE_BY_SIDE_CONTENTS,
    }
    _write_text_atomic(folder / README_TXT, audit.readme(files))
    return folder


def evaluate_run(
    run_dir: Path,
    *,
    real: RealData | None = None,
    seed: int | None = None,
    tsne: bool = True,
    local_utility: bool = True,
    save_arrays: bool = False,
    progress: PhaseProgress | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Evaluate the run in ``run_dir``: (evaluation, per-record arrays for the plots).

    Writes run_dir/audit/evaluation.json and the audit README; the arrays (real images, clinical
    rows, per-record scores) stay in memory unless ``save_arrays``, which writes them to
    run_dir/audit/real-records-arrays.npz for a later :func:`render_report` with ``reuse``.
    ``real``/``seed`` bypass re-deriving the real data from config.toml (tests, custom pipelines).
    ``tsne`` adds the t-SNE view (a few seconds); ``local_utility`` adds one TRTR per hospital
    (what each hospital could do alone). ``progress`` shows the evaluation's steps (see :func:`evaluate`).
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir, real=real, seed=seed)
    evaluation, arrays = evaluate(run, tsne=tsne, local_utility=local_utility, progress=progress)
    folder = _open_audit_dir(run_dir)
    _write_text_atomic(folder / EVALUATION_JSON, json.dumps(evaluation, indent=2, allow_nan=False))
    if "class_mean_real" in arrays:
        plots.save_png(plots.side_by_side_of(arrays, evaluation["data"]["class_names"]), folder / SIDE_BY_SIDE_PNG)
    if save_arrays:
        tmp = folder / (ARRAYS_NPZ + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, folder / ARRAYS_NPZ)
    return evaluation, arrays


def load_saved(run_dir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The evaluation and arrays a previous ``evaluate_run(..., save_arrays=True)`` wrote.

    A missing file is a DataError naming it: the arrays exist only after ``--save-arrays``.
    """
    folder = audit_dir(run_dir)
    for name in (EVALUATION_JSON, ARRAYS_NPZ):
        if not (folder / name).exists():
            raise DataError(
                str(folder / name),
                "file not found (--reuse re-renders the page from the saved evaluation and per-record arrays)",
                f"what `fedsynth report {run_dir} --save-arrays` writes: run with --save-arrays first",
            )
    evaluation = json.loads((folder / EVALUATION_JSON).read_text())
    with np.load(folder / ARRAYS_NPZ, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return evaluation, arrays


def render_report(
    run_dir: Path,
    *,
    evaluation: dict[str, Any] | None = None,
    arrays: dict[str, np.ndarray] | None = None,
    reuse: bool = False,
    real: RealData | None = None,
    seed: int | None = None,
    tsne: bool = True,
    local_utility: bool = True,
    save_arrays: bool = False,
    progress: PhaseProgress | None = None,
) -> Path:
    """Write run_dir/audit/report.html; returns its path.

    The page is built from ``evaluation`` and ``arrays`` when both are given (the result of
    :func:`evaluate_run`), from the saved audit files when ``reuse``, and otherwise from a fresh
    :func:`evaluate_run` (``real``, ``seed``, ``tsne``, ``local_utility``, ``save_arrays``, ``progress``
    passed on).
    """
    from fedsynth.evaluation.page import build_report_html
    from fedsynth.evaluation.run import read_metrics

    run_dir = Path(run_dir)
    if evaluation is not None and arrays is not None:
        ev, arr = evaluation, arrays
    elif reuse:
        ev, arr = load_saved(run_dir)
    else:
        ev, arr = evaluate_run(
            run_dir,
            real=real,
            seed=seed,
            tsne=tsne,
            local_utility=local_utility,
            save_arrays=save_arrays,
            progress=progress,
        )
    html = build_report_html(ev, arr, read_metrics(run_dir / "metrics.jsonl"))
    out = _open_audit_dir(run_dir) / REPORT_HTML
    _write_text_atomic(out, html)
    return out
