"""The HTML of report.html: one self-contained page (inline CSS, inline PNGs, one small inline script).

The page shows real patient records, so its first element is the audit banner
(``<div class="banner audit" id="audit-banner">``, text :data:`fedsynth.evaluation.audit.NOTICE`).
The privacy banner (``id="privacy-banner"``, ``data-level`` = the guarantee level) takes its words
from the run's guarantee (:mod:`fedsynth.evaluation.budget`): green only for level "dp".

Machine-readable hooks (used by the browser test and by anyone scraping reports):

- every summary value is an element ``<td id="sum-KEY" data-key="KEY" data-value="JSON">``
  whose ``data-value`` is the exact JSON of ``evaluation.json["summary"][KEY]``;
- every verdict is ``<div id="verdict-NAME" data-level="pass|warn|fail|...">``;
- a run attacked by a malicious server (DIR/attack/) gets the verdict ``reconstruction`` and, in
  the Attack section, ``<p id="attack-finding" data-level="...">`` with the one-line finding;
- the whole summary is also embedded as ``<script type="application/json" id="evaluation-summary">``;
- after load, the inline script sets ``<body data-selfcheck="ok">`` when every embedded image
  decoded and no script error occurred (otherwise ``data-selfcheck="error"`` and the messages in
  ``#selfcheck-errors``).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedsynth.data.guards import MIN_TEST_RECORDS_PER_CLASS
from fedsynth.evaluation import audit, plots
from fedsynth.evaluation.budget import banner_text, guarantee_of

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1em 2em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.value { font-family: monospace; text-align: right; white-space: nowrap; }
td.how { color: #555; font-size: 0.85em; }
.verdicts { display: flex; flex-wrap: wrap; gap: 0.6em; margin: 1em 0; }
.verdict { border-radius: 6px; padding: 0.5em 0.8em; min-width: 12em; max-width: 22em;
           border: 1px solid #ccc; }
.verdict b { display: block; text-transform: uppercase; font-size: 0.8em; letter-spacing: 0.05em; }
.level-pass, .level-good { background: #e6f4ea; border-color: #34a853; }
.level-warn, .level-fair { background: #fef7e0; border-color: #f9ab00; }
.level-fail, .level-poor { background: #fce8e6; border-color: #d93025; }
.level-info, .level-n\\/a { background: #eef3fb; border-color: #8ab4f8; }
.banner { padding: 0.6em 1em; border-radius: 6px; font-weight: bold; margin: 0.5em 0; }
.banner.private { background: #e6f4ea; } .banner.nonprivate { background: #fce8e6; }
.banner.noguarantee { background: #fde4cf; border: 2px solid #e8710a; }
.banner.audit { background: #b3261e; color: #fff; font-size: 1.1em; border: 3px solid #601410; }
.banner .meaning { display: block; font-weight: normal; font-size: 0.9em; margin-top: 0.3em; }
.method { color: #444; font-size: 0.9em; background: #fafafa; border-left: 3px solid #ccc;
          padding: 0.4em 0.8em; }
img.plot { max-width: 100%; display: block; margin: 0.5em 0; }
nav ul { columns: 3; font-size: 0.9em; } .muted { color: #777; }
"""

SCRIPT = """
(function () {
  var errors = [];
  window.addEventListener('error', function (e) { errors.push(String(e.message || e)); });
  function check() {
    var imgs = document.getElementsByTagName('img');
    for (var i = 0; i < imgs.length; i++) {
      if (!imgs[i].complete || imgs[i].naturalWidth === 0) { errors.push('image ' + i + ' did not decode'); }
    }
    var summary = JSON.parse(document.getElementById('evaluation-summary').textContent);
    var cells = document.querySelectorAll('[data-key]');
    for (var j = 0; j < cells.length; j++) {
      var key = cells[j].getAttribute('data-key');
      if (JSON.stringify(JSON.parse(cells[j].getAttribute('data-value'))) !== JSON.stringify(summary[key])) {
        errors.push('summary cell ' + key + ' does not match the embedded summary');
      }
    }
    document.body.setAttribute('data-images', String(imgs.length));
    document.body.setAttribute('data-selfcheck', errors.length ? 'error' : 'ok');
    document.getElementById('selfcheck-errors').textContent = errors.join('\\n');
  }
  if (document.readyState === 'complete') { check(); } else { window.addEventListener('load', check); }
})();
"""

SECTIONS = [
    ("summary", "Summary"),
    ("budget", "Privacy budget"),
    ("utility", "Utility"),
    ("fidelity", "Fidelity"),
    ("table", "Clinical table"),
    ("associations", "Cross-modal associations"),
    ("memorization", "Memorization"),
    ("privacy", "Distance to closest record and membership inference"),
    ("guarantees", "Reality and Diversity Guarantees"),
    ("embedding", "Embedding view"),
    ("samples", "Samples"),
    ("training", "Training curves"),
    ("attack", "Attack"),
    ("methods", "How each number was computed"),
]

#: Summary rows grouped for display: (group title, keys).
SUMMARY_GROUPS: list[tuple[str, list[str]]] = [
    ("Data", ["n_hospitals", "n_train", "n_holdout", "n_synthetic"]),
    ("Privacy budget", ["private", "privacy_guarantee", "epsilon_max", "delta"]),
    (
        "Utility (held-out real test data)",
        [
            "tstr_mcc",
            "trtr_mcc",
            "utility_ratio",
            "tstr_auroc",
            "trtr_auroc",
            "tstr_balanced_accuracy",
            "trtr_balanced_accuracy",
        ],
    ),
    (
        "Fidelity",
        [
            "frechet_distance",
            "frechet_distance_baseline",
            "precision",
            "recall",
            "density",
            "coverage",
            "precision_baseline",
            "recall_baseline",
            "marginal_wasserstein_mean",
            "marginal_tv_mean",
            "correlation_mean_abs_diff",
            "association_kept_share",
            "association_sign_agreement",
        ],
    ),
    (
        "Memorization (maximum Pearson correlation to a training image)",
        [
            "share_above_095",
            "holdout_share_above_095",
            "max_corr_median",
            "max_corr_holdout_median",
            "share_above_095_residual",
            "holdout_share_above_095_residual",
            "max_corr_residual_median",
            "max_corr_residual_holdout_median",
            "exceeds_holdout_p99",
        ],
    ),
    (
        "Membership inference and distances",
        [
            "mia_auc_pixel",
            "mia_auc_embedding",
            "ratio_mia_auc_pixel",
            "ratio_mia_auc_embedding",
            "density_mia_auc",
            "dcr_ratio_pixel",
            "dcr_ratio_embedding",
            "reality_guarantee",
            "diversity_guarantee",
        ],
    ),
    ("Attack", ["attack"]),
]


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, key: str = "") -> str:
    """Human-readable value: 3 significant digits, n/a for null, 'not private' for a missing epsilon."""
    if value is None:
        return "not private (no guarantee)" if key.startswith("epsilon") else "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.3g}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def value_cell(key: str, value: Any) -> str:
    """The summary cell: formatted text plus the exact JSON value for machines."""
    data = json.dumps(value, allow_nan=False)
    attrs = f'id="sum-{esc(key)}" data-key="{esc(key)}" data-value="{esc(data)}"'
    return f'<td class="value" {attrs}>{esc(fmt(value, key))}</td>'


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, raw: bool = False) -> str:
    """An HTML table; cells are escaped and formatted unless ``raw``."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else esc(fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def img(uri: str | None, alt: str) -> str:
    return f'<img class="plot" alt="{esc(alt)}" src="{uri}">' if uri else ""


def prose(text: str) -> str:
    """A paragraph written as an indented triple-quoted string, with its whitespace collapsed."""
    return " ".join(text.split())


def method(text: str) -> str:
    return f'<p class="method"><b>How:</b> {text}</p>'


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{esc(title)}</h2>{body}</section>'


# ------------------------------------------------------------------------------------------------


def _summary_row(key: str, value: Any, methods: dict[str, str]) -> str:
    text = methods.get(key, "")
    if not text and key.startswith("epsilon_hospital_"):
        hospital = key.removeprefix("epsilon_hospital_")
        text = f"epsilon spent by hospital {hospital} (privacy.json); null = not private"
    how = esc(text)
    return f"<tr><td>{esc(key)}</td>{value_cell(key, value)}<td class='how'>{how}</td></tr>"


#: Banner style per guarantee level: green only for a meaningful DP guarantee.
_BANNER_CLASS = {"dp": "private", "none": "noguarantee", "not-private": "nonprivate"}


def _privacy_banner(budget: dict[str, Any]) -> str:
    """The privacy status line: the guarantee's label (and meaning), styled by its level."""
    g = guarantee_of(budget)
    if g is None:
        return (
            '<div class="banner" id="privacy-banner" data-level="unknown">'
            "No privacy.json: the privacy status of this run is unknown</div>"
        )
    level = str(g.get("level"))
    css = _BANNER_CLASS.get(level, "nonprivate")
    meaning = f'<span class="meaning">{esc(g["meaning"])}</span>' if g.get("meaning") else ""
    return (
        f'<div class="banner {css}" id="privacy-banner" data-level="{esc(level)}">{esc(banner_text(g))}{meaning}</div>'
    )


def _summary_section(ev: dict[str, Any]) -> str:
    s, verdicts = ev["summary"], ev["verdicts"]
    methods = dict(ev.get("methods", {}))
    budget = ev.get("privacy_budget", {})
    banner = _privacy_banner(budget)
    cards = "".join(
        f'<div class="verdict level-{esc(v["level"])}" id="verdict-{esc(name)}" '
        f'data-level="{esc(v["level"])}">'
        f"<b>{esc(name.replace('_', ' '))}: {esc(v['level'])}</b>{esc(v['text'])}</div>"
        for name, v in verdicts.items()
    )
    rows = []
    shown = set()
    for group, keys in SUMMARY_GROUPS:
        rows.append(f'<tr><th colspan="3">{esc(group)}</th></tr>')
        if group == "Privacy budget":
            keys = keys + sorted(k for k in s if k.startswith("epsilon_hospital_"))
        for key in keys:
            if key not in s:
                continue
            shown.add(key)
            rows.append(_summary_row(key, s[key], methods))
    rest = [k for k in s if k not in shown]
    if rest:
        rows.append('<tr><th colspan="3">Other</th></tr>')
        for key in rest:
            rows.append(_summary_row(key, s[key], methods))
    hosp = budget.get("hospitals", {})
    hosp_table = ""
    if hosp:
        hosp_table = "<h3>Privacy budget spent per hospital</h3>" + table(
            [
                "hospital",
                "epsilon",
                "delta",
                "target epsilon",
                "accountant",
                "mechanism runs",
                "DP-SGD steps",
            ],
            [
                [
                    hid,
                    fmt(h["epsilon"], "epsilon"),
                    h["delta"],
                    h["target_epsilon"],
                    h["accountant"],
                    h["mechanism_runs"],
                    h["steps"],
                ]
                for hid, h in hosp.items()
            ],
        )
    attack = ev.get("attack")
    attack_line = (
        f"<p>Attack: {esc(attack['finding'])} (see <a href='#attack'>Attack</a>).</p>"
        if attack
        else "<p>No attack run.</p>"
    )
    return (
        banner
        + f'<div class="verdicts">{cards}</div>'
        + hosp_table
        + attack_line
        + "<table><thead><tr><th>metric</th><th>value</th><th>how it was computed</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + "<p class='muted'>"
        + prose(
            f"""
            Verdict rules. Memorization fails when the share of synthetic images whose residual maximum
            correlation to a training image exceeds 0.95 is more than 1 percentage point above the same
            share for held-out real images; it warns when the raw correlation shows such an excess or
            when more than 5% of synthetic images exceed the held-out images' 99th percentile. Membership
            passes when the strongest attack AUC is at most 0.55 and warns up to 0.65. Utility is good at
            a TSTR/TRTR MCC ratio of at least 0.8, fair from 0.5. Fidelity is good when precision and
            recall both reach 80% of what held-out real data score, fair from 50%. Evaluation size warns
            when some class has fewer than {MIN_TEST_RECORDS_PER_CLASS} held-out records; utility then
            warns and shows no score.
            """
        )
        + "</p>"
    )


#: Above this epsilon the per-hospital bar chart is left out (the axis would overflow).
_PLOT_EPSILON_MAX = 1e12


def _guarantee_facts(budget: dict[str, Any]) -> str:
    """Guarantee, neighbouring relation, noise source, and what privacy.json releases outside DP."""
    g = guarantee_of(budget) or {}
    threshold = g.get("meaningful_epsilon_threshold")
    noise = {
        True: "reproducible from the run seed (simulation only: no protection against whoever holds the seed)",
        False: "secret randomness",
    }.get(budget.get("reproducible_noise"), "not stated in privacy.json")
    body = table(
        ["privacy status", ""],
        [
            ["guarantee", f"{g.get('level', 'n/a')}: {banner_text(g)}" if g else "n/a"],
            ["meaningful epsilon threshold", threshold],
            ["neighbouring relation", budget.get("neighbouring_relation", "unstated")],
            ["DP noise and sampling", noise],
        ],
    )
    if budget.get("note"):
        body += f"<p class='verdict level-warn'>{esc(budget['note'])}</p>"
    releases = budget.get("declared_releases") or []
    body += "<h3 id='declared-releases'>Released outside the DP guarantee (declared in privacy.json)</h3>"
    if releases:
        body += table(["what", "where", "basis"], [[r.get("what"), r.get("where"), r.get("basis")] for r in releases])
    else:
        body += "<p class='muted'>privacy.json declares no releases outside the DP guarantee.</p>"
    return body


def _budget_section(ev: dict[str, Any]) -> str:
    budget = ev.get("privacy_budget", {})
    if not budget.get("available"):
        return f"<p>{esc(budget.get('reason', 'no privacy.json'))}</p>"
    hosp = budget["hospitals"]
    names = list(hosp)
    eps = [h["epsilon"] for h in hosp.values()]
    body = ""
    drawn = [e for h in hosp.values() for e in (h["epsilon"], h["target_epsilon"]) if e is not None]
    if drawn and max(drawn) > _PLOT_EPSILON_MAX:
        body += f"<p>Largest epsilon {esc(fmt(max(drawn)))}: too large to draw.</p>"
    elif any(e is not None for e in eps):
        body += img(
            plots.bar_chart(
                [f"hospital {n}" for n in names],
                {"epsilon spent": eps, "target": [h["target_epsilon"] for h in hosp.values()]},
                title="epsilon per hospital",
                ylabel="epsilon",
            ),
            "epsilon per hospital",
        )
    extra = [k for k in ("neighbouring_relation", "max_grad_norm") if any(k in h for h in hosp.values())]
    body += table(
        ["hospital", "epsilon", "delta", "target", "accountant", "runs", "steps", "noise multipliers"]
        + [k.replace("_", " ") for k in extra],
        [
            [
                n,
                fmt(h["epsilon"], "epsilon"),
                h["delta"],
                h["target_epsilon"],
                h["accountant"],
                h["mechanism_runs"],
                h["steps"],
                ", ".join(f"{v:.3g}" for v in h["noise_multipliers"]),
                *[h.get(k) for k in extra],
            ]
            for n, h in hosp.items()
        ],
    )
    body += _guarantee_facts(budget)
    body += method(
        prose(
            """
            epsilon is read from privacy.json, where the run's accountant computed it from each hospital's
            full history of DP-SGD mechanisms (noise multiplier, sample rate, steps per phase and round).
            The report does not recompute it. 'not private' means the hospital ran at least one mechanism
            without noise. The guarantee's level and words come from fedsynth.privacy.label: above the
            meaningful threshold, or with noise reproducible from a seed, DP-SGD ran but the run is not
            called private.
            """
        )
    )
    return body


def _utility_section(ev: dict[str, Any]) -> str:
    u = ev["utility"]
    tstr, trtr = u["tstr"], u["trtr"]
    metrics = ["mcc", "auroc", "balanced_accuracy"]
    series = {"TSTR (synthetic)": [tstr[m] for m in metrics], "TRTR (real)": [trtr[m] for m in metrics]}
    body = img(plots.bar_chart(metrics, series, title="train on X, test on held-out real", ylabel="score"), "utility")
    rows = []
    for name, res in (("TSTR: train on synthetic", tstr), ("TRTR: train on real (all hospitals)", trtr)):
        rows.append(
            [
                name,
                res["classifier"],
                res["mcc"],
                res["auroc"],
                res["balanced_accuracy"],
                res["n_train"],
                res["n_test"],
            ]
        )
        for fam, f in res.get("per_family", {}).items():
            rows.append([f"  {fam}", f["classifier"], f["mcc"], f["auroc"], f["balanced_accuracy"], "", ""])
    for hname, res in u.get("local_trtr", {}).items():
        rows.append(
            [
                f"hospital {hname} alone",
                res["classifier"],
                res["mcc"],
                res["auroc"],
                res["balanced_accuracy"],
                res["n_train"],
                res["n_test"],
            ]
        )
    body += table(["training data", "selected classifier", "MCC", "AUROC", "balanced acc.", "n train", "n test"], rows)
    notes = [f"TSTR: {n}" for n in tstr.get("notes", [])] + [f"TRTR: {n}" for n in trtr.get("notes", [])]
    if notes:
        body += "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"
    if u.get("run_summary"):
        rs = u["run_summary"]
        body += (
            "<p class='muted'>As recorded by the run (summary.json): "
            + esc(", ".join(f"{k} MCC {fmt(v.get('mcc'))}" for k, v in rs.items() if isinstance(v, dict)))
            + "</p>"
        )
    body += method(
        prose(
            """
            features are fixed and data-independent (images average-pooled to at most 16x16, numeric columns
            scaled by public bounds, categoricals one-hot). The training data are split per class 75/25 into
            fit and validation parts; every candidate (logistic regression C in {1, 0.1, 10}; random forest
            of 100 trees, depth in {none, 4, 8}) is fitted on the fit part and the one with the best
            validation MCC is refitted on all training data and scored once on the held-out real split. The
            test data never choose the classifier. 'hospital X alone' trains on that hospital's records
            only: what it could do without the federation.
            """
        )
    )
    return body


def _fidelity_section(ev: dict[str, Any]) -> str:
    f = ev["fidelity"]
    syn, base = f["synthetic_vs_train"], f["holdout_vs_train"]
    keys = ["frechet_distance", "precision", "recall", "density", "coverage"]
    body = table(
        ["comparison", *keys, "n real", "n other"],
        [
            ["synthetic vs training", *[syn[k] for k in keys], syn["n_real"], syn["n_synthetic"]],
            [
                "held-out real vs training (baseline)",
                *[base[k] for k in keys],
                base["n_real"],
                base["n_synthetic"],
            ],
        ],
    )
    body += "<h3>Per class</h3>" + table(
        ["class", "n train", "n synthetic", *keys],
        [[c["class"], c["n_train"], c["n_synthetic"], *[c.get(k) for k in keys]] for c in f["per_class"]],
    )
    body += method(
        prose(
            f"""
            in the embedding space: {esc(ev["spaces"]["embedding"]["description"])}
            ({ev["spaces"]["embedding"]["dim"]} dimensions,
            {ev["spaces"]["embedding"]["explained_variance"]:.0%} of the held-out variance). Frechet
            distance = |mu_r - mu_s|^2 + tr(C_r + C_s - 2 (C_r^1/2 C_s C_r^1/2)^1/2) of Gaussians fitted to
            each side. Precision/recall/density/coverage: Naeem et al. 2020 with k = 5 nearest-neighbour
            balls. The baseline row is what a fresh real sample scores: a generator cannot be expected to do
            better.
            """
        )
    )
    return body


def _table_section(ev: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    t = ev["tabular"]
    if not t.get("available"):
        return f"<p>{esc(t.get('reason', 'no clinical table'))}</p>"
    cols = t["columns"]
    body = ""
    schema_cols = ev["data"]["schema"]["columns"]
    if "train_clinical" in arrays:
        bounds = [(c.get("low") or 0.0, c.get("high") or 1.0) for c in schema_cols]
        body += img(
            plots.marginal_panels(arrays["train_clinical"], arrays["synthetic_clinical"], cols, bounds),
            "marginals",
        )
    body += table(
        ["column", "kind", "distance", "metric", "real mean", "synthetic mean", "real std", "synthetic std"],
        [
            [
                c["column"],
                c["kind"],
                c["distance"],
                c["metric"],
                c.get("real_mean"),
                c.get("synthetic_mean"),
                c.get("real_std"),
                c.get("synthetic_std"),
            ]
            for c in cols
        ],
    )
    corr = t["correlation"]
    body += img(
        plots.heatmaps(
            {
                "training data": np.array(corr["real"]),
                "synthetic": np.array(corr["synthetic"]),
                "difference (syn - real)": np.array(corr["synthetic"]) - np.array(corr["real"]),
            },
            corr["columns"],
            title="Pearson correlation of clinical columns and label",
        ),
        "correlations",
    )
    b = t.get("baseline", {})
    body += table(
        ["", "synthetic vs training", "held-out real vs training"],
        [
            [
                "mean Wasserstein (numeric, scaled)",
                t["mean_wasserstein_numeric"],
                b.get("mean_wasserstein_numeric"),
            ],
            ["mean total variation (categorical)", t["mean_tv_categorical"], b.get("mean_tv_categorical")],
            ["correlation matrix mean |diff|", corr["mean_abs_diff"], b.get("correlation_mean_abs_diff")],
            ["correlation matrix max |diff|", corr["max_abs_diff"], None],
        ],
    )
    body += method(
        prose(
            """
            numeric columns: 1-Wasserstein distance between training and synthetic values, both scaled to
            [0, 1] with the column's public bounds (0.1 = a tenth of the range apart on average);
            categorical columns: total variation distance 0.5 * sum |p_real - p_syn| of category
            frequencies. Correlations: Pearson over numeric values, binary codes and one indicator per
            category / class (constant columns count as 0).
            """
        )
    )
    return body


def _associations_section(ev: dict[str, Any]) -> str:
    a = ev["associations"]
    if not a.get("available"):
        return f"<p>{esc(a.get('reason', 'not available'))}</p>"
    body = ""
    if a.get("known"):
        body += "<h3>Known associations of the phantom</h3>" + table(
            [
                "clinical variable",
                "image feature",
                "expected sign",
                "real r",
                "synthetic r",
                "kept",
                "mechanism",
            ],
            [
                [
                    k["variable"],
                    k["feature"],
                    "+" if k["sign"] > 0 else "-",
                    k["real"],
                    k["synthetic"],
                    "yes" if k["kept"] else "NO",
                    k["mechanism"],
                ]
                for k in a["known"]
            ],
        )
        kept = a.get("kept_share")
        body += f"<p>Kept: {'n/a' if kept is None else f'{kept:.0%}'} of the known associations.</p>"
    body += img(
        plots.association_scatter(a["pairs"], title=f"all clinical x image-feature pairs ({a['mode']} features)"),
        "associations",
    )
    strongest = sorted(a["pairs"], key=lambda p: -abs(p["real"]))[:12]
    body += "<h3>Strongest associations in the real data</h3>" + table(
        ["clinical variable", "image feature", "real r", "synthetic r", "|diff|"],
        [[p["variable"], p["feature"], p["real"], p["synthetic"], p["abs_diff"]] for p in strongest],
    )
    if a["mode"] == "phantom":
        features = """
            Image features: the phantom's anatomical measurements (disc intensity, body size, fat
            thickness, lesion load/count, bridge score); a known association is kept when the synthetic
            correlation has the declared sign and at least half the real strength.
            """
    else:
        features = "Image features: mean intensity, intensity spread, share of pixels above 0.7, edge energy."
    agreement = esc(fmt(a.get("sign_agreement")))
    body += method(
        prose(
            f"""
            Spearman rank correlation between each clinical variable (numeric value, binary code, or one
            indicator per category/class) and each image feature, in the training data and in the
            synthetic data. {features} Sign agreement over pairs with |real r| >= 0.1: {agreement}.
            """
        )
    )
    return body


def _memorization_variant(m: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str, label: str) -> str:
    samples = {"synthetic -> train": arrays[f"{prefix}_synthetic"]}
    if f"{prefix}_holdout" in arrays:
        samples["held-out real -> train"] = arrays[f"{prefix}_holdout"]
    body = img(
        plots.histograms(
            samples,
            title=f"max {label} correlation to any training image",
            xlabel="correlation",
            vline=m["threshold"],
        ),
        f"max {label} correlation",
    )
    keys = ("mean", "median", "p95", "p99", "max")
    rows = [["synthetic", *[m["synthetic"][k] for k in keys], m["share_above"]]]
    if "holdout" in m:
        rows.append(["held-out real", *[m["holdout"][k] for k in keys], m["holdout_share_above"]])
    body += table(["images", "mean", "median", "p95", "p99", "max", f"share > {m['threshold']}"], rows)
    if f"{prefix}_pair_synthetic" in arrays and len(m["top_pairs"]):
        body += img(
            plots.image_pairs(
                arrays[f"{prefix}_pair_synthetic"],
                arrays[f"{prefix}_pair_train"],
                [f"r={p['correlation']:.3f}\nsyn {p['synthetic']}/tr {p['train']}" for p in m["top_pairs"]],
                top_label="synthetic",
                bottom_label="closest training",
            ),
            f"closest pairs by {label} correlation",
        )
    return body


def _memorization_section(ev: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    m = ev["memorization"]
    if m.get("available") is False:
        return f"<p>{esc(m.get('reason'))}: see the distance to closest record.</p>"
    body = "<h3>Raw correlation (seed 001)</h3>" + _memorization_variant(m, arrays, "memo", "raw")
    if "residual" in m:
        body += "<h3>Residual correlation (mean training image subtracted)</h3>" + _memorization_variant(
            m["residual"], arrays, "memo_residual", "residual"
        )
    nh = m.get("nearest_hospital", {})
    if nh:
        body += "<h3>Whose patients are the nearest?</h3>" + table(
            [
                "hospital",
                "share of synthetic images whose most correlated (residual) training image is from it",
                "its share of training data",
            ],
            [[h, v["nearest_share"], v["training_share"]] for h, v in nh.items()],
        )
    body += method(
        prose(
            f"""
            each image is flattened, centred and scaled to unit norm; the Pearson correlations of every
            synthetic image with every training image are one matrix product (in chunks) and the maximum per
            synthetic image is kept (seed 001). Near-copies: maximum > 0.95. The held-out real images give
            the baseline: how similar new patients are to the training set by nature. Aligned scans share
            their anatomy, so raw correlations between different patients are high; the residual variant
            subtracts the pixel-wise mean training image from every image first (a copy still scores 1, a
            new patient far less). Pairs are shown synthetic above, its most correlated training image
            below. {m["n_constant"]} constant synthetic images count as 0.
            """
        )
    )
    return body


def _privacy_section(ev: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    p = ev["privacy"]
    body = ""
    rows = []
    for space in ("pixel", "embedding"):
        d, a = p[space]["dcr"], p[space]["distance_attack"]
        r = p[space].get("ratio_attack") or {}
        rows.append(
            [
                space,
                d["synthetic_median"],
                d["holdout_median"],
                d["median_ratio"],
                d["share_below_holdout_p05"],
                d["exact_copies"],
                a["auc"],
                a["tpr_at_fpr"].get("0.01"),
                a["tpr_at_fpr"].get("0.1"),
                r.get("auc"),
                (r.get("tpr_at_fpr") or {}).get("0.01"),
            ]
        )
    body += table(
        [
            "space",
            "DCR synthetic (median)",
            "DCR holdout (median)",
            "ratio",
            "share below holdout p5",
            "exact copies",
            "MIA AUC",
            "TPR@1%FPR",
            "TPR@10%FPR",
            "ratio-attack AUC",
            "ratio TPR@1%FPR",
        ],
        rows,
    )
    body += img(
        plots.histograms(
            {
                "synthetic -> train": arrays["dcr_pixel_synthetic"],
                "held-out -> train": arrays["dcr_pixel_holdout"],
            },
            title="distance to closest training record (pixel space)",
            xlabel="L2 distance",
        ),
        "dcr pixel",
    )
    body += img(
        plots.histograms(
            {
                "synthetic -> train": arrays["dcr_embedding_synthetic"],
                "held-out -> train": arrays["dcr_embedding_holdout"],
            },
            title="distance to closest training record (embedding space)",
            xlabel="L2 distance",
        ),
        "dcr embedding",
    )
    curves = {}
    for kind, label in (("mia", "distance"), ("ratio", "distance ratio")):
        for space in ("pixel", "embedding"):
            if f"{kind}_{space}_members" in arrays:
                curves[f"{label}, {space}"] = (
                    arrays[f"{kind}_{space}_members"],
                    arrays[f"{kind}_{space}_nonmembers"],
                )
    body += img(plots.roc_curves(curves, title="membership inference from the synthetic data"), "roc")
    dens = p["embedding"]["density_attack"]
    auc, radius = esc(fmt(dens["auc"])), esc(fmt(dens["radius"]))
    body += f"<p>Density (distribution) attack, embedding space: AUC {auc} (radius {radius}).</p>"
    per = {
        f"{attack} ({space})": (p[space].get(attack) or {}).get("per_hospital_auc", {})
        for attack in ("distance_attack", "ratio_attack")
        for space in ("pixel", "embedding")
    }
    per["density_attack (embedding)"] = dens.get("per_hospital_auc", {})
    hospitals = list(ev["data"]["hospitals"])
    if len(hospitals) > 1:
        body += (
            "<h3>Attack AUC per hospital (that hospital's records vs all held-out records)</h3>"
            "<p class='muted'>Confounded by site differences (scanner, case mix): a hospital whose records "
            "are unusual scores away from 0.5 in either direction without any leakage. Read these next to "
            "the pooled AUCs above.</p>"
        ) + table(["hospital", *per], [[h, *[v.get(h) for v in per.values()]] for h in hospitals])
    if "dcr_pair_synthetic" in arrays and p.get("closest_pairs_pixel"):
        body += "<h3>Closest pairs (smallest pixel distance)</h3>" + img(
            plots.image_pairs(
                arrays["dcr_pair_synthetic"],
                arrays["dcr_pair_train"],
                [f"d={c['distance']:.2f}\nsyn {c['synthetic']} / train {c['train']}" for c in p["closest_pairs_pixel"]],
                top_label="synthetic",
                bottom_label="closest training",
            ),
            "closest pairs by distance",
        )
    body += method(
        prose(
            f"""
            distance to closest record (DCR): Euclidean distance of each synthetic record to its nearest
            training record, compared with the same for held-out real records (new patients). Ratio < 1 or
            many synthetic records below the holdout's 5th percentile mean synthetic records sit closer to
            training patients than new patients do. Membership inference (seed 000's pairwise attack):
            members = training records, non-members = held-out records; score = minus the distance to the
            nearest synthetic record; AUC 0.5 = no signal. Density attack (seed 000's distribution attack):
            score = number of synthetic records within the median holdout->train nearest-neighbour distance.
            Distance-ratio attack: score = log distance to the nearest held-out record (itself left out)
            minus log distance to the nearest synthetic record, which cancels what makes a record far from
            everything (a noisy scanner, a rare phenotype). Caveat: with hospital/label skew or different
            scanners, members and non-members can differ in distribution, and per-hospital AUCs compare one
            site's records with all held-out records: site effects move them either way (the ratio attack
            is the least affected).
            Pixel space: {esc(p["spaces"]["pixel"])}. Embedding space: {esc(p["spaces"]["embedding"])}.
            """
        )
    )
    return body


def _guarantees_section(ev: dict[str, Any]) -> str:
    p = ev["privacy"]
    rows = []
    for space in ("pixel", "embedding"):
        r = p[space]["reality_diversity"]
        rows.append(
            [
                space,
                r.get("rg"),
                r.get("dg"),
                r.get("median_synthetic_to_a"),
                r.get("median_b_to_synthetic"),
                r.get("median_b_to_a"),
                r.get("reason", ""),
            ]
        )
    body = table(
        [
            "space",
            "Reality Guarantee",
            "Diversity Guarantee",
            "median d(S, A)",
            "median d(B, S')",
            "median d(B, A)",
            "note",
        ],
        rows,
    )
    body += method(
        prose(
            """
            the held-out real records are split at random into two disjoint halves A and B (records the
            generator never saw). Reality Guarantee RG = median over synthetic records s of the distance to
            the nearest record of A, divided by the median over b in B of the distance to the nearest record
            of A: 1 = synthetic records lie as close to real data as real records do; above 1 = less
            realistic. Diversity Guarantee DG = median over b in B of the distance to the nearest record of
            S' (a random synthetic subset of size |A|), divided by the same real-to-real median: 1 = the
            synthetic data cover real patients as well as a real sample does; above 1 = parts of the real
            distribution are missing. (Seed 002 names both; this is our explicit form.)
            """
        )
    )
    return body


def _embedding_section(ev: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    names = ev["data"]["class_names"]
    hospitals = list(ev["data"]["hospitals"])
    body = img(
        plots.scatter_views(
            arrays["pca_real"],
            arrays["pca_synthetic"],
            arrays["train_hospital"],
            arrays["train_labels"],
            arrays["synthetic_labels"],
            names,
            hospitals,
            title="PCA (fitted on the training records)",
        ),
        "pca",
    )
    if "tsne_real" in arrays:
        ri, si = arrays["tsne_real_index"], arrays["tsne_synthetic_index"]
        body += img(
            plots.scatter_views(
                arrays["tsne_real"],
                arrays["tsne_synthetic"],
                arrays["train_hospital"][ri],
                arrays["train_labels"][ri],
                arrays["synthetic_labels"][si],
                names,
                hospitals,
                title="t-SNE (real and synthetic together, subsample)",
            ),
            "tsne",
        )
    e = ev["embedding"]
    explained = ", ".join(f"{v:.0%}" for v in e["pca_explained_variance"])
    body += method(
        prose(
            f"""
            both views start from the embedding space. PCA: the first two principal components of the
            training records (explained variance {explained}); synthetic records are projected with the
            same map. t-SNE (scikit-learn, perplexity up to 30, PCA initialisation) embeds a random
            subsample of real and synthetic records jointly. {esc(e["why_not_umap"])}.
            """
        )
    )
    return body


def _samples_section(ev: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    if "grid_real_images" not in arrays:
        return "<p>No images in this data set.</p>"
    names = ev["data"]["class_names"]
    f = ev["fidelity"]
    if "class_mean_real" in arrays:
        body = img(plots.to_data_uri(plots.side_by_side_of(arrays, names)), "real and synthetic samples side by side")
    else:  # evaluations saved before the side-by-side view
        body = img(
            plots.image_grid(arrays["grid_real_images"], arrays["grid_real_labels"], names, title="real (training)"),
            "real grid",
        )
        body += img(
            plots.image_grid(
                arrays["grid_synthetic_images"], arrays["grid_synthetic_labels"], names, title="synthetic"
            ),
            "synthetic grid",
        )
    means = f.get("class_means")
    if means:
        body += table(
            ["class", "synthetic vs training mean image", "held-out vs training mean image", "correlation"],
            [
                [m["class"], fmt(m["synthetic_vs_train"]), fmt(m["holdout_vs_train"]), fmt(m["correlation"])]
                for m in means["per_class"]
            ],
        )
        body += method(
            prose(
                """
                class mean images: the mean absolute pixel difference between each class's mean synthetic
                image and its mean training image (pixel values in [0, 1]), beside the same difference for
                the held-out real records (how much two real samples of the class differ), and the
                correlation of the two mean images over pixels.
                """
            )
        )
    body += table(
        ["class", "training records", "synthetic records"],
        [[n, f["train_class_counts"][i], f["synthetic_class_counts"][i]] for i, n in enumerate(names)],
    )
    return body


def _training_section(metrics: list[dict[str, Any]]) -> str:
    if not metrics:
        return "<p>No metrics.jsonl in the run folder.</p>"
    uri = plots.training_curves(metrics)
    return img(uri, "training curves") + method(
        prose(
            """
            every numeric field of metrics.jsonl, per hospital and for the server, by round.
            """
        )
    )


def _png_uri(arrays: dict[str, np.ndarray], key: str) -> str | None:
    """A PNG file carried in ``arrays`` (raw bytes as uint8) as a data URI, or None when absent."""
    data = arrays.get(key)
    if data is None or data.size == 0:
        return None
    return "data:image/png;base64," + base64.b64encode(np.asarray(data, dtype=np.uint8).tobytes()).decode("ascii")


def _attack_section(ev: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """The malicious server's results: threat model, per-target ReRo, per-hospital bounds, plots, refusals."""
    attack = ev.get("attack")
    if not attack:
        return "<p id='attack-status'>No attack run (the run folder has no attack/).</p>"
    level = ((ev.get("verdicts") or {}).get("reconstruction") or {}).get("level", "info")
    body = (
        f"<p class='verdict level-{level}' id='attack-finding' data-level='{level}'>"
        f"<b>finding</b>{esc(attack['finding'])}</p>"
    )
    setup = attack.get("setup") or {}
    journal = attack.get("journal") or {}
    rounds = ", ".join(map(str, journal.get("rounds", []))) or "-"
    layers = ", ".join(f"{t.get('name')} ({t.get('layer')}, {t.get('phase')})" for t in setup.get("targets", []))
    body += table(
        ["attack", ""],
        [
            ["threat model", f"{attack['threat_model']}: {attack['threat_model_words']}"],
            ["architecture sent", setup.get("architecture")],
            ["optimizer / sampling", f"{setup.get('optimizer')} / {setup.get('sampling')}"],
            ["attacked rounds", setup.get("rounds")],
            ["imprint rows (bins)", setup.get("bins")],
            ["targets (layer, phase)", layers or "none"],
            [
                "updates inverted",
                f"{journal.get('updates_inverted', 0)} (rounds {rounds}),"
                f" {journal.get('candidates', 0)} candidate records recovered",
            ],
        ],
    )
    refusals = attack.get("refusals") or []
    if refusals:
        body += (
            "<h3>Refusals (the sites' guardrails at work)</h3><ul id='attack-refusals'>"
            + "".join(f"<li class='level-pass'>{esc(r['words'])}</li>" for r in refusals)
            + "</ul>"
        )
    if attack.get("scoring_note"):
        body += f"<p id='attack-scoring' class='muted'>{esc(attack['scoring_note'])}</p>"
    targets = attack.get("targets") or {}
    if targets:
        body += "<h3>Reconstructions against the true records</h3>" + table(
            ["target", "distance", "records", "ReRo@0.1", "ReRo@0.3", "exact", "median distance", "finding"],
            [
                [
                    name,
                    t["metric"],
                    t["records"],
                    t["rero_01"],
                    t["rero_03"],
                    t["exact"],
                    t["median_distance"],
                    t["finding"],
                ]
                for name, t in targets.items()
            ],
        )
    hospitals = attack.get("hospitals") or {}
    if hospitals:
        rows = []
        for hid, h in hospitals.items():
            b = h.get("bounds") or {}
            note = h.get("bounds_note") or ("no DP guarantee: the bound is 1" if h.get("private") is False else "")
            for target, m in (h.get("measured") or {"-": {}}).items():
                rows.append(
                    [
                        hid,
                        fmt(h.get("epsilon"), "epsilon"),
                        h.get("records") if h.get("records") is not None else "private",
                        target,
                        m.get("rero_01"),
                        m.get("rero_03"),
                        m.get("exact"),
                        b.get("worst_case"),
                        b.get("relaxed"),
                        b.get("worst_case_clt"),
                        note,
                    ]
                )
        body += "<h3>Measured ReRo next to the theoretical bounds, per hospital</h3>" + table(
            [
                "hospital",
                "epsilon",
                "records (n)",
                "target",
                "measured ReRo@0.1",
                "measured ReRo@0.3",
                "exact",
                "worst-case bound",
                "relaxed bound",
                "CLT approximation",
                "note",
            ],
            rows,
        )
    body += img(_png_uri(arrays, "attack_png_cdf"), "attack: distance CDF")
    for name in targets:
        uri = _png_uri(arrays, f"attack_png_pairs-{name}")
        if uri:
            title = f"{name}: true records (top) over their closest reconstructions (best of one hospital)"
            body += f"<h3>{esc(title)}</h3>" + img(uri, f"attack pairs {name}")
    body += method(
        prose(
            """
            the server's reconstructions (DIR/attack/reconstructions) are scored against each hospital's
            true records (simulation only: the sites' records): for every true record, the distance to the
            closest reconstruction the server got from that hospital's updates, every attacked round pooled.
            ReRo@eta = share of records closer than eta; exact = closer than 0.001. Bounds: the success
            probability of any reconstruction attack against the hospital's DP-SGD mechanism history
            (privacy.json), with a baseline guess among its n records as prior (1/n): worst case = the
            Neyman-Pearson test's power ("Bounding data reconstruction attacks with the hypothesis testing
            interpretation of differential privacy"), relaxed = an adversary without the candidate record
            in advance (generalised likelihood ratio test), CLT = the Gaussian-DP approximation (not a bound).
            The measured ReRo@0.1 of a DP hospital should stay below its worst-case bound. The count n is
            known here only in a simulation or when the hospital declared it public.
            """
        )
    )
    return body


def _methods_section(ev: dict[str, Any]) -> str:
    methods = dict(ev.get("methods", {}))
    body = table(["number", "how it was computed"], [[k, v] for k, v in methods.items()])
    notes = ev.get("notes", [])
    if notes:
        body += "<h3>Notes</h3><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"
    return body


def build_report_html(evaluation: dict[str, Any], arrays: dict[str, np.ndarray], metrics: list[dict[str, Any]]) -> str:
    """The complete report page."""
    ev = evaluation
    bodies = {
        "summary": _summary_section(ev),
        "budget": _budget_section(ev),
        "utility": _utility_section(ev),
        "fidelity": _fidelity_section(ev),
        "table": _table_section(ev, arrays),
        "associations": _associations_section(ev),
        "memorization": _memorization_section(ev, arrays),
        "privacy": _privacy_section(ev, arrays),
        "guarantees": _guarantees_section(ev),
        "embedding": _embedding_section(ev, arrays),
        "samples": _samples_section(ev, arrays),
        "training": _training_section(metrics),
        "attack": _attack_section(ev, arrays),
        "methods": _methods_section(ev),
    }
    nav = "<nav><ul>" + "".join(f'<li><a href="#{sid}">{esc(t)}</a></li>' for sid, t in SECTIONS) + "</ul></nav>"
    sections = "".join(_section(sid, title, bodies[sid]) for sid, title in SECTIONS)
    summary_json = json.dumps(ev["summary"], allow_nan=False).replace("</", "<\\/")
    d = ev["data"]
    subtitle = (
        f"{d['n_train']} training records in {len(d['hospitals'])} hospitals, {d['n_holdout']} held-out, "
        f"{d['n_synthetic']} synthetic; classes: {', '.join(d['class_names'])}; modalities: "
        + ", ".join(m for m, ok in (("image", d["has_images"]), ("clinical table", d["has_table"])) if ok)
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>AUDIT ARTEFACT - fedsynth report: {esc(ev['run_dir'])}</title><style>{CSS}</style></head><body>"
        f'<div class="banner audit" id="audit-banner">{esc(audit.NOTICE)}</div>'
        f"<h1>Synthetic data report</h1><p class='muted'>run folder {esc(ev['run_dir'])} · "
        f"seed {esc(ev['seed'])} · "
        f"{esc(subtitle)}</p>{nav}{sections}"
        f'<script type="application/json" id="evaluation-summary">{summary_json}</script>'
        '<pre id="selfcheck-errors" class="muted"></pre>'
        f"<script>{SCRIPT}</script></body></html>"
    )
