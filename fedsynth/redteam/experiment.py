"""``fedsynth attack``: the malicious server against simulated hospitals, setting by setting, beside
the theoretical reconstruction bounds and the utility the same budget buys.

Each setting is one real federated run (in-process engine by default, Flower's simulation engine
on request) with a malicious server plugged in through the run's server hook; the hospitals run
their real code, policy and DP-SGD. The site policy of the study is deliberately permissive (it
accepts the shipped architecture and code, tiny batches and unchecked weights): the question here
is what the attack recovers when nothing stops it; the guardrails that stop it are measured
separately (``experiments/redteam/guardrail_rates.py``) and in the last setting of the default
grid, where the default site policy refuses.

Outputs in ``DIR``: ``attack.csv`` (one row per true record per setting), ``cdf/<setting>.png``
and ``cdf/budgets.png`` (every budget of the batch-1 series in one plot),
``table.md`` / ``table.json`` (epsilon -> ReRo@0.1, worst-case and relaxed bounds, TSTR utility),
``runs/<setting>/`` (each run folder, with the server's ``attack/`` and the scores in
``audit/attack/``), ``auxiliary.npz`` (the server's public records: the held-out split, never a
hospital's). The study scores real (simulated) records, so its folder is an audit artefact as a
whole: ``README.txt`` says so.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedsynth.attacks.imprint import expected_exact_recoveries
from fedsynth.attacks.scoring import save_cdf_plot
from fedsynth.attacks.server import shipped_code_digest
from fedsynth.config import RunConfig, load_config
from fedsynth.config.loading import to_flat
from fedsynth.data import load_federation
from fedsynth.data.records_file import save_records
from fedsynth.evaluation.audit import ATTACK_SCORES_DIR, readme
from fedsynth.models.imprint import IMPRINT_ARCHITECTURE
from fedsynth.privacy.accounting import MechanismEvent
from fedsynth.privacy.reconstruction import reconstruction_bounds
from fedsynth.redteam.audit import audit_attack
from fedsynth.runfolder import write_json
from fedsynth.site.code import app_code_digest
from fedsynth.site.policy import BUILTIN_ARCHITECTURE

CSV_COLUMNS = [
    "setting",
    "data",
    "threat_model",
    "target",
    "epsilon",
    "batch_size",
    "bins",
    "optimizer",
    "hospital",
    "record",
    "distance",
]


@dataclass(frozen=True)
class Setting:
    """One attacked run. ``epsilon`` None: non-private. ``batch``: the batch the server asks for
    (exact for non-private sites, the expected Poisson batch under DP). ``records``: records per
    hospital to aim for. ``refuse``: run with the default (protective) site policy instead."""

    name: str
    threat_model: str
    epsilon: float | None
    batch: int
    bins: int
    records: int
    optimizer: str = "sgd"
    local_steps: int = 1
    rounds: int = 0  # 0: one pass over the records (records / batch rounds of one step)
    refuse: bool = False
    series: str = "dp"
    targets: str = ""

    @property
    def epsilon_label(self) -> str:
        return "non-private" if self.epsilon is None else f"{self.epsilon:g}"


@dataclass
class SettingResult:
    setting: Setting
    scores: dict
    bounds: dict
    records_per_hospital: list[int]
    seconds: float
    refused: dict = field(default_factory=dict)
    epsilon_spent: float | None = None

    @property
    def batch(self) -> int:
        """The batch the hospitals drew: the requested one, capped by the smallest hospital."""
        return min([self.setting.batch, *self.records_per_hospital])


EPSILONS = (1.0, 8.0, 32.0, 1e3, 1e9, 1e12)


def default_settings(quick: bool = False) -> list[Setting]:
    """The study's grid (see ``docs`` in README): batch 1 / 10 bins across budgets; batch and bins
    at no DP against the expected exact recoveries; weights-only against the honest optimizer;
    the honest control; and one run under the default site policy (refused)."""
    n = 16 if quick else 32
    big = 32 if quick else 64
    settings = [Setting("code-shipping-b1-k10-nonprivate", "code-shipping", None, 1, 10, n)]
    epsilons = (8.0, 1e9) if quick else EPSILONS
    settings += [Setting(f"code-shipping-b1-k10-eps{e:g}", "code-shipping", e, 1, 10, n) for e in epsilons]
    batches = (1, 8) if quick else (1, 8, 64)
    for bins in (10, 128):
        for b in batches:
            if b == 1 and bins == 10:
                continue
            settings.append(
                Setting(f"code-shipping-b{b}-k{bins}-nonprivate", "code-shipping", None, b, bins, big, series="batch")
            )
    table = {"series": "weights", "targets": "table", "rounds": 4}
    latent = {"series": "weights", "targets": "latent", "rounds": 4}
    settings += [
        Setting("weights-only-table-sgd-b8", "weights-only", None, 8, 10, n, "sgd", **table),
        Setting("weights-only-table-adam-b8", "weights-only", None, 8, 10, n, "adam", 3, **table),
        Setting("honest-control-table-sgd-b8", "honest", None, 8, 10, n, "sgd", **table),
        Setting("honest-control-table-sgd-b1", "honest", None, 1, 10, n, "sgd", **table),
        Setting("weights-only-latent-sgd-b8", "weights-only", None, 8, 10, n, "sgd", **latent),
        Setting("weights-only-latent-adam-eps8", "weights-only", 8.0, 8, 10, n, "adam", 3, **latent),
        Setting("code-shipping-default-policy", "code-shipping", 8.0, 1, 10, n, refuse=True, series="guardrail"),
    ]
    return settings


def setting_overrides(setting: Setting, out: Path, aux: Path, records: int, sample_rate_batch: int) -> list[str]:
    """The ``--set`` overrides that make the base configuration into this setting's run."""
    rounds = setting.rounds or max(1, records // setting.batch)
    o = [
        f'out_dir="{out}"',
        f'attack.threat_model="{setting.threat_model}"',
        f'attack.targets="{setting.targets}"',
        f"attack.bins={setting.bins}",
        f'attack.auxiliary="{aux}"',
        f"attack.batch_size={setting.batch}",
        f"attack.assumed_records={records}",
        f'train.optimizer="{setting.optimizer}"',
        f"train.local_steps_autoencoder={setting.local_steps}",
        f"train.local_steps_gan={setting.local_steps}",
        f"train.batch_size={setting.batch}",
        "evaluation.num_synthetic=50",
        "evaluation.centralized_baseline=false",
    ]
    if setting.threat_model == "code-shipping":
        o += [f"train.rounds_autoencoder={rounds}", "train.rounds_gan=0"]
    else:  # the table is attacked in the autoencoder rounds, the latent in the GAN rounds
        o += [f"train.rounds_autoencoder={rounds}", f"train.rounds_gan={rounds}", "train.generator_steps_per_round=1"]
    if setting.epsilon is None:
        o += ["privacy.enabled=false", 'train.sampling="fixed"']
    else:
        o += [
            "privacy.enabled=true",
            f"privacy.target_epsilon={setting.epsilon!r}",
            'train.sampling="poisson"',
            f"privacy.sample_rate={min(1.0, sample_rate_batch / records)!r}",
        ]
    if not setting.refuse:
        shipped = shipped_code_digest(app_code_digest())
        o += [
            "site_policy.require_dp=false",
            "site_policy.lifetime_epsilon_budget=0",
            "site_policy.min_batch_size=1",
            "site_policy.check_weights=false",
            f'site_policy.architectures="{BUILTIN_ARCHITECTURE},{IMPRINT_ARCHITECTURE}"',
            f'site_policy.approved_code="{app_code_digest()},{shipped}"',
        ]
    return o


def _records_for(base: RunConfig, setting: Setting) -> list[str]:
    """Data overrides that give each hospital about ``setting.records`` records (phantom only:
    other sources keep their size and the setting uses what each hospital holds)."""
    if base.data.source != "phantom":
        return []
    hospitals = base.federation.num_hospitals
    total = math.ceil(setting.records * hospitals / (1 - base.data.test_fraction)) + hospitals
    return [f"data.phantom_records={total}"]


def base_overrides(base: RunConfig) -> list[str]:
    """The base configuration as ``--set`` overrides (data and federation sections only: the rest
    of the run is the setting's)."""
    keep = ("data.", "federation.num_hospitals", "federation.strategy", "seed", "simulation.device", "model.")
    return [f"{k}={json.dumps(v)}" for k, v in to_flat(base).items() if k.startswith(keep)]


def run_setting(
    base: RunConfig, setting: Setting, out: Path, engine: str = "inprocess", log: Callable[[str], None] = print
) -> SettingResult:
    """Run one attacked federation and score it (see the module docstring)."""
    from fedsynth.errors import FedsynthError
    from fedsynth.simulation.engines import simulate, simulate_in_process

    started = time.perf_counter()
    sized = load_config(None, [*base_overrides(base), *_records_for(base, setting)])
    fed = load_federation(sized.data, sized.federation.num_hospitals, sized.seed)
    aux = out / "auxiliary.npz"
    save_records(fed.test, aux)
    records = min(len(h) for h in fed.hospitals)
    run_dir = out / "runs" / setting.name
    config = load_config(
        None,
        [
            *base_overrides(base),
            *_records_for(base, setting),
            *setting_overrides(setting, run_dir, aux, records, setting.batch),
        ],
    )
    refused: dict = {}
    try:
        (simulate if engine == "flower" else simulate_in_process)(config)
    except FedsynthError as e:
        refused = {"error": str(e)}
    privacy = json.loads((run_dir / "privacy.json").read_text()) if (run_dir / "privacy.json").exists() else {}
    if privacy.get("refusals"):
        refused = privacy["refusals"]
    scores = audit_attack(run_dir) if (run_dir / "model").exists() else {"targets": {}}
    bounds, spent = {}, None
    for hid, h in privacy.get("hospitals", {}).items():
        events = [MechanismEvent.from_dict(e) for e in h.get("history", [])]
        mine = [e for e in events if e.noise_multiplier > 0 or not h.get("private", True)]
        if h.get("private") and mine:
            n = len(fed.hospitals[int(hid)])
            bounds[hid] = reconstruction_bounds(mine, 1.0 / n).to_dict()
            spent = max(spent or 0.0, h.get("epsilon") or 0.0)
    result = SettingResult(
        setting, scores, bounds, [len(h) for h in fed.hospitals], time.perf_counter() - started, refused, spent
    )
    log(_describe(result))
    return result


def _describe(r: SettingResult) -> str:
    s = r.setting
    parts = [f"{s.name}: {r.seconds:.0f} s"]
    for target, sc in r.scores.get("targets", {}).items():
        parts.append(f"{target} ReRo@0.1 {sc['rero_01']:.3f} exact {sc['exact']}/{sc['records']}")
    if r.refused:
        parts.append("refused")
    return "; ".join(parts)


def _bound(result: SettingResult, key: str) -> float | None:
    values = [b[key] for b in result.bounds.values()]
    return max(values) if values else None


def data_label(base: RunConfig) -> str:
    """The data set in words for attack.csv: the source, and the file for file sources."""
    return base.data.source if not base.data.path else f"{base.data.source}:{Path(base.data.path).name}"


def write_outputs(
    results: list[SettingResult], out: Path, tstr: dict[str, float | None] | None = None, data: str = ""
) -> dict:
    """attack.csv, one CDF plot per setting, and the epsilon table (markdown and JSON)."""
    with (out / "attack.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in results:
            s = r.setting
            records_csv = out / "runs" / s.name / ATTACK_SCORES_DIR / "records.csv"
            if not records_csv.exists():
                continue
            with records_csv.open() as g:
                for row in csv.DictReader(g):
                    writer.writerow(
                        [s.name, data, s.threat_model, row["target"], s.epsilon_label, r.batch, s.bins, s.optimizer]
                        + [row["hospital"], row["record"], row["distance"]]
                    )
    (out / "cdf").mkdir(exist_ok=True)
    budgets = {
        f"epsilon {r.setting.epsilon_label}": np.asarray(r.scores["targets"]["image"]["distances"])
        for r in results
        if r.setting.series == "dp" and "image" in r.scores.get("targets", {})
    }
    if budgets:  # the study's headline plot: one CDF per budget, batch 1 and 10 bins
        save_cdf_plot(budgets, out / "cdf" / "budgets.png", "Code-shipping imprint, batch 1, 10 bins: 1 - SSIM")
    rows = []
    for r in results:
        s = r.setting
        curves = {t: np.asarray(sc["distances"]) for t, sc in r.scores.get("targets", {}).items()}
        if curves:
            save_cdf_plot(curves, out / "cdf" / f"{s.name}.png", f"{s.name} (epsilon {s.epsilon_label})")
        for target, sc in r.scores.get("targets", {}).items():
            n = sc["records"]
            rows.append(
                {
                    "setting": s.name,
                    "series": s.series,
                    "threat_model": s.threat_model,
                    "target": target,
                    "epsilon": s.epsilon_label,
                    "epsilon_spent": r.epsilon_spent,
                    "batch_size": r.batch,
                    "bins": s.bins,
                    "optimizer": s.optimizer,
                    "records": n,
                    "rero_01": sc["rero_01"],
                    "rero_03": sc["rero_03"],
                    "exact": sc["exact"],
                    "expected_exact": expected_exact_recoveries(r.batch, s.bins) / r.batch * n
                    if s.epsilon is None and s.threat_model == "code-shipping"
                    else None,
                    "worst_case_bound": _bound(r, "worst_case"),
                    "relaxed_bound": _bound(r, "relaxed"),
                    "tstr_mcc": (tstr or {}).get(s.epsilon_label) if s.series == "dp" else None,
                    "seconds": r.seconds,
                }
            )
        if r.refused:
            rows.append({"setting": s.name, "series": s.series, "threat_model": s.threat_model, "refused": r.refused})
    table = {"rows": rows}
    write_json(out / "table.json", table)
    (out / "table.md").write_text(markdown_table(rows))
    return table


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.3g}%"


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| setting | target | epsilon | batch | bins | optimizer | ReRo@0.1 | ReRo@0.3 | exact / records | "
        "expected exact | worst-case bound | relaxed bound | TSTR MCC |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "refused" in r:
            reasons = r["refused"]
            text = json.dumps(reasons)[:160] if not isinstance(reasons, str) else reasons[:160]
            lines.append(f"| {r['setting']} | refused by the sites: {text} |||||||||||")
            continue
        expected = "" if r.get("expected_exact") is None else f"{r['expected_exact']:.1f}"
        tstr = "" if r.get("tstr_mcc") is None else f"{r['tstr_mcc']:.2f}"
        lines.append(
            f"| {r['setting']} | {r['target']} | {r['epsilon']} | {r['batch_size']} | {r['bins']} | {r['optimizer']} | "
            f"{r['rero_01']:.3f} | {r['rero_03']:.3f} | {r['exact']} / {r['records']} | {expected} | "
            f"{_pct(r.get('worst_case_bound'))} | {_pct(r.get('relaxed_bound'))} | {tstr} |"
        )
    return "\n".join(lines) + "\n"


#: The honest training schedule of the utility runs (small: one run per budget).
UTILITY_SCHEDULE = [
    "train.rounds_autoencoder=2",
    "train.rounds_gan=2",
    "train.local_steps_autoencoder=30",
    "train.local_steps_gan=30",
    "train.generator_steps_per_round=10",
    "privacy.sample_rate=0.1",
    "evaluation.num_synthetic=300",
    "evaluation.centralized_baseline=false",
]


def utility_run(base: RunConfig, epsilon: float | None, out: Path, log: Callable[[str], None] = print) -> float | None:
    """TSTR MCC of an honest run (default site policy, no attack) at ``epsilon`` (None: non-private)
    on the base data, with the small schedule :data:`UTILITY_SCHEDULE`: what the budget buys. The
    sample rate is raised where the hospitals are small, so batches meet the default batch floor."""
    from fedsynth.errors import FedsynthError
    from fedsynth.simulation.engines import simulate_in_process

    privacy = (
        ["privacy.enabled=false", "site_policy.require_dp=false"]
        if epsilon is None
        else [f"privacy.target_epsilon={epsilon!r}", "site_policy.lifetime_epsilon_budget=0"]
    )
    sized = load_config(None, [*base_overrides(base), *UTILITY_SCHEDULE])
    fed = load_federation(sized.data, sized.federation.num_hospitals, sized.seed)
    floor = sized.site_policy.min_batch_size
    rate = min(1.0, max(sized.privacy.sample_rate, floor / min(len(h) for h in fed.hospitals)))
    config = load_config(
        None,
        [*base_overrides(base), *UTILITY_SCHEDULE, *privacy, f"privacy.sample_rate={rate!r}", f'out_dir="{out}"'],
    )
    try:
        summary = simulate_in_process(config)
    except FedsynthError as e:
        log(f"utility run at epsilon {epsilon}: {e}")
        return None
    mcc = summary.get("tstr", {}).get("mcc")
    return None if mcc is None else float(mcc)


def run_experiment(
    base: RunConfig,
    out: Path,
    settings: list[Setting] | None = None,
    engine: str = "inprocess",
    log: Callable[[str], None] = print,
    utility: bool = True,
) -> dict:
    """Every setting in turn, the utility run of each budget, then the outputs."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.txt").write_text(
        readme(
            {
                "attack.csv, table.md, table.json, cdf/": "distances of real records to their reconstructions",
                "runs/*/sites/": "the simulated hospitals' records",
                "runs/*/audit/attack/": "pair grids of real images beside their reconstructions",
            },
            "`fedsynth attack`",
        )
    )
    results = [run_setting(base, s, out, engine, log) for s in settings or default_settings()]
    tstr: dict[str, float | None] = {}
    if utility:
        for eps in sorted(
            {r.setting.epsilon for r in results if r.setting.series == "dp"}, key=lambda e: e or math.inf
        ):
            label = "non-private" if eps is None else f"{eps:g}"
            started = time.perf_counter()
            tstr[label] = utility_run(base, eps, out / "utility" / label, log)
            log(f"utility at epsilon {label}: TSTR MCC {tstr[label]} ({time.perf_counter() - started:.0f} s)")
    return write_outputs(results, out, tstr, data_label(base))
