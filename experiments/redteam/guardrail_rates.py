"""Detection and false-positive rates of the site guardrails against a record-reconstructing server.

Attack side: for every threat model, many seeds, the instruction a malicious server would send is
built and put through the site's guardrails (:data:`fedsynth.hospital.guardrails.GUARDRAILS`) and,
separately, through every weight detector (:mod:`fedsynth.hospital.detectors`):

- code-shipping ("Robbing the Fed"): the ``imprint-block-v1`` architecture with SGD, one local step
  and batches of about one record, against a site that accepts only the builtin architecture, one
  that accepts the architecture but pins other code, one that approved the shipped code (tiny batch),
  and one that approved the code and gets an honest batch size (only the weight detectors remain);
- weights-only imprint: honest code, K identical rows ``scale * v`` with a bias ladder and identical
  next-layer columns planted in the table encoder's or the discriminator's first Linear;
- trap weights ("When the Curious Abandon Honesty"): rows of paired +/- entries;
- adaptive: the imprint (or trap) with random perturbations on rows and columns, at levels chosen so
  the near-duplicate check (cosine >= 0.98) no longer fires, and with a modest scale.

Honest side: fresh initializations over many seeds and model sizes, and every instruction every
hospital receives in every round of small real federations (fedavg and ring), captured in front of
the guardrails by a recording guardrail.

Run: ``python experiments/redteam/guardrail_rates.py --out runs/redteam/guardrail_rates.json``
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fedsynth.config import RunConfig, load_config
from fedsynth.config.schema import ModelConfig
from fedsynth.data.phantom import make_phantom
from fedsynth.data.records import Schema
from fedsynth.federation.server import make_job, run_federation
from fedsynth.hospital.detectors import DETECTORS, findings
from fedsynth.hospital.guardrails import GUARDRAILS, Proposal, first_refusal, inspected_layers, weights_look_honest
from fedsynth.models.architectures import build_architecture
from fedsynth.models.imprint import IMPRINT_ARCHITECTURE
from fedsynth.protocol import Arrays, Job, RoundInstruction
from fedsynth.simulation.inprocess import InProcessTransport
from fedsynth.simulation.sites import prepare_sites
from fedsynth.site.code import app_code_digest
from fedsynth.site.policy import BUILTIN_ARCHITECTURE, SitePolicy

TABLE = (
    "autoencoder.table_encoder.net.0.weight",
    "autoencoder.table_encoder.net.0.bias",
    "autoencoder.table_encoder.net.2.weight",
)
DISCRIMINATOR = ("discriminator.body.0.weight", "discriminator.body.0.bias", "discriminator.body.2.weight")
IMPRINT = (
    "autoencoder.image_encoder.imprint.first.weight",
    "autoencoder.image_encoder.imprint.first.bias",
    "autoencoder.image_encoder.imprint.second.weight",
)
MODEL = ["model.image_channels=8"]
RECORDS = 120


# -- crafting weights ------------------------------------------------------------------------------
def measurement(dim: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    """A unit measurement direction: random, or all-equal (mean brightness, "Robbing the Fed")."""
    v = np.ones(dim) if kind == "brightness" else rng.standard_normal(dim)
    return v / np.linalg.norm(v)


def ladder(v: np.ndarray, bins: int, rng: np.random.Generator, nonnegative: bool) -> np.ndarray:
    """Ascending thresholds at the quantiles of <v, x> over auxiliary records the server holds."""
    aux = rng.uniform(0, 1, (512, v.size)) if nonnegative else rng.standard_normal((512, v.size))
    h = aux @ v
    c = np.quantile(h, np.arange(bins) / bins)
    c[0] = h.min() - 10 * h.std()
    return c


def plant_imprint(
    arrays: Arrays,
    target: tuple[str, str, str],
    bins: int,
    scale: float,
    rng: np.random.Generator,
    kind: str = "random",
    perturb: float = 0.0,
    nonnegative: bool = True,
) -> Arrays:
    """A copy of ``arrays`` with an imprint block in ``target``'s rows (rows ``scale * v``, biases
    ``-scale * c`` ascending, identical next-layer columns), each row and column perturbed by
    Gaussian noise of ``perturb`` times its norm (the adaptive attacker)."""
    out = dict(arrays)
    w, b, nxt = (np.array(arrays[k], dtype=np.float64) for k in target)
    rows = np.sort(rng.choice(w.shape[0], size=min(bins, w.shape[0]), replace=False))
    v = measurement(w.shape[1], rng, kind)
    c = ladder(v, len(rows), rng, nonnegative)
    w[rows] = scale * v + perturb * scale * rng.standard_normal((len(rows), w.shape[1])) / np.sqrt(w.shape[1])
    b[rows] = -scale * c
    column = nxt[:, rows[0]].copy()
    norm = np.linalg.norm(column)
    nxt[:, rows] = column[:, None] + perturb * norm * rng.standard_normal((nxt.shape[0], len(rows))) / np.sqrt(
        nxt.shape[0]
    )
    for key, value in zip(target, (w, b, nxt)):
        out[key] = value.astype(np.float32)
    return out


def plant_trap(
    arrays: Arrays, target: tuple[str, str, str], rows_count: int, rng: np.random.Generator, perturb: float = 0.0
) -> Arrays:
    """A copy of ``arrays`` with trap rows in ``target``: each row pairs magnitudes m with +m and
    -s*m (s a little above 1, so few records activate it), at the honest initialization scale."""
    out = dict(arrays)
    w = np.array(arrays[target[0]], dtype=np.float64)
    d = w.shape[1]
    half = d // 2
    rows = rng.choice(w.shape[0], size=min(rows_count, w.shape[0]), replace=False)
    s = rng.uniform(1.0, 1.5)
    for r in rows:
        m = np.abs(rng.standard_normal(half))
        entries = np.zeros(d)
        where = rng.permutation(d)
        entries[where[:half]] = m
        entries[where[half : 2 * half]] = -s * m
        entries *= (1 / np.sqrt(3)) / np.linalg.norm(entries)
        entries += perturb * np.linalg.norm(entries) * rng.standard_normal(d) / np.sqrt(d)
        w[r] = entries
    out[target[0]] = w.astype(np.float32)
    return out


# -- proposals -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Case:
    """One crafted instruction and the site that receives it."""

    proposal: Proposal
    knobs: dict


def _config(seed: int, extra: list[str]) -> RunConfig:
    return load_config(None, [*MODEL, f"seed={seed}", "privacy.sample_rate=0.2", *extra])


@functools.lru_cache(maxsize=256)
def _initial(architecture: str, schema: Schema, model: ModelConfig, seed: int, options: str) -> Arrays:
    network = build_architecture(architecture, schema, model, seed, json.loads(options))
    return dict(network.weights())


def _weights(job: Job, schema: Schema) -> Arrays:
    """The seeded initial weights of the job's architecture (a fresh dict; arrays are shared, and
    the crafting functions copy what they change)."""
    options = json.dumps(job.architecture_options, sort_keys=True)
    return dict(_initial(job.architecture, schema, job.model, job.seed, options))


def threat_models(schema: Schema) -> dict[str, Callable[[int], Case]]:
    """Each threat model: seed -> the crafted case (job, weights, site policy)."""
    honest_digest = app_code_digest()
    shipped = "f" * 64 if honest_digest != "f" * 64 else "e" * 64

    def code_shipping(variant: str) -> Callable[[int], Case]:
        def build(seed: int) -> Case:
            rng = np.random.default_rng(seed)
            bins = int(rng.choice([8, 10, 16, 32]))
            non_private = variant == "approved-code-fixed-batch"
            extra = [
                'train.optimizer="sgd"',
                "train.local_steps_autoencoder=1",
                f"privacy.sample_rate={1 / RECORDS:.6f}",
            ]
            if non_private:
                extra += ["privacy.enabled=false", 'train.sampling="fixed"', "train.batch_size=1"]
            if variant == "approved-code-honest-batch":
                extra[-1] = "privacy.sample_rate=0.2"
            cfg = _config(seed, extra)
            digest = honest_digest if variant == "builtin-only" else shipped
            job = dataclasses.replace(
                make_job(cfg, schema, f"attack-{seed}"),
                architecture=IMPRINT_ARCHITECTURE,
                architecture_options={"bins": bins},
                code_digest=digest,
            )
            arrays = plant_imprint(
                _weights(job, schema), IMPRINT, bins, 1.0, rng, kind=str(rng.choice(["random", "brightness"]))
            )
            policy = SitePolicy()
            if variant != "builtin-only":
                policy = SitePolicy(
                    architectures=(BUILTIN_ARCHITECTURE, IMPRINT_ARCHITECTURE), require_dp=not non_private
                )
            if variant.startswith("approved-code"):
                policy = dataclasses.replace(policy, approved_code=(honest_digest, shipped))
            instruction = RoundInstruction(1, "autoencoder", weights=arrays, job=job)
            return Case(Proposal(policy, instruction, schema, RECORDS), {"bins": bins})

        return build

    def weights_only(target: tuple[str, str, str], phase: str, adaptive: bool = False) -> Callable[[int], Case]:
        def build(seed: int) -> Case:
            rng = np.random.default_rng(10_000 + seed)
            job = make_job(_config(seed, []), schema, f"attack-{seed}")
            arrays = _weights(job, schema)
            rows = arrays[target[0]].shape[0]
            bins = int(rng.integers(10, min(128, rows) + 1))
            kind = str(rng.choice(["random", "brightness"]))
            if adaptive:
                scale = float(rng.choice([1.0, 10.0]))
                perturb = float(rng.choice([0.2, 0.35, 0.5]))
            else:
                scale = float(rng.choice([1.0, 10.0, 100.0, 1000.0]))
                perturb = 0.0
            crafted = plant_imprint(arrays, target, bins, scale, rng, kind, perturb, nonnegative=target == TABLE)
            instruction = RoundInstruction(1, phase, weights=crafted, job=job)
            knobs = {"bins": bins, "scale": scale, "perturb": perturb, "measurement": kind}
            return Case(Proposal(SitePolicy(), instruction, schema, RECORDS), knobs)

        return build

    def trap(target: tuple[str, str, str], phase: str, perturb: float = 0.0) -> Callable[[int], Case]:
        def build(seed: int) -> Case:
            rng = np.random.default_rng(20_000 + seed)
            job = make_job(_config(seed, []), schema, f"attack-{seed}")
            arrays = _weights(job, schema)
            rows = arrays[target[0]].shape[0]
            count = int(rng.integers(10, rows + 1))
            crafted = plant_trap(arrays, target, count, rng, perturb)
            instruction = RoundInstruction(1, phase, weights=crafted, job=job)
            return Case(Proposal(SitePolicy(), instruction, schema, RECORDS), {"rows": count, "perturb": perturb})

        return build

    return {
        "code-shipping/builtin-only-site": code_shipping("builtin-only"),
        "code-shipping/other-code-pinned": code_shipping("pinned"),
        "code-shipping/approved-code-tiny-batch": code_shipping("approved-code"),
        "code-shipping/approved-code-fixed-batch": code_shipping("approved-code-fixed-batch"),
        "code-shipping/approved-code-honest-batch": code_shipping("approved-code-honest-batch"),
        "weights-only/table-encoder": weights_only(TABLE, "autoencoder"),
        "weights-only/discriminator": weights_only(DISCRIMINATOR, "gan"),
        "trap/table-encoder": trap(TABLE, "autoencoder"),
        "trap/discriminator": trap(DISCRIMINATOR, "gan"),
        "adaptive/table-encoder": weights_only(TABLE, "autoencoder", adaptive=True),
        "adaptive/discriminator": weights_only(DISCRIMINATOR, "gan", adaptive=True),
        "adaptive-trap/table-encoder": trap(TABLE, "autoencoder", perturb=0.05),
        "adaptive-trap/discriminator": trap(DISCRIMINATOR, "gan", perturb=0.05),
    }


# -- evaluation ------------------------------------------------------------------------------------
#: Every guardrail but the weight check, which :func:`evaluate` derives from the detector hits.
RULES_BEFORE_WEIGHTS = [g for g in GUARDRAILS if g is not weights_look_honest]


def evaluate(proposal: Proposal) -> tuple[str | None, dict[str, str]]:
    """The site's refusal (as :func:`first_refusal` with :data:`GUARDRAILS` gives it) and every
    detector's finding on the proposal (detector -> first finding), each detector run once."""
    hits: dict[str, str] = {}
    for layer in inspected_layers(proposal):
        for name, finding in findings(layer).items():
            hits.setdefault(name, finding)
    refusal = first_refusal(proposal, RULES_BEFORE_WEIGHTS)
    if refusal is None and hits and proposal.policy.check_weights:
        refusal = f"rule weights_look_honest: {next(iter(hits.values()))}"
    return refusal, hits


def rule_of(refusal: str | None) -> str:
    if refusal is None:
        return "accepted"
    return refusal.split(":", 1)[0].removeprefix("rule ")


class Tally:
    """Counts of proposals, refusals by rule, and detector hits."""

    def __init__(self) -> None:
        self.total = 0
        self.rules: Counter[str] = Counter()
        self.detectors: Counter[str] = Counter()
        self.flagged = 0

    def add(self, refusal: str | None, hits: dict[str, str]) -> None:
        self.total += 1
        self.rules[rule_of(refusal)] += 1
        self.detectors.update(list(hits))
        self.flagged += bool(hits)

    def to_dict(self) -> dict:
        refused = self.total - self.rules["accepted"]
        return {
            "proposals": self.total,
            "refused": refused,
            "refusal_rate": refused / max(1, self.total),
            "detectors_any_rate": self.flagged / max(1, self.total),
            "rules": dict(self.rules),
            "detector_rates": {d.__name__: self.detectors[d.__name__] / max(1, self.total) for d in DETECTORS},
        }


def attack_rates(schema: Schema, seeds: int) -> dict[str, dict]:
    results = {}
    for name, build in threat_models(schema).items():
        tally = Tally()
        for seed in range(seeds):
            case = build(seed)
            tally.add(*evaluate(case.proposal))
        results[name] = tally.to_dict()
    return results


def fresh_init_rates(schema: Schema, seeds: int) -> dict:
    """Honest first-round instructions (both phases) over seeds and a few model sizes."""
    tally = Tally()
    sizes = [[], ["model.table_hidden=256", "model.gan_hidden=256"], ["model.table_hidden=32", "model.gan_hidden=64"]]
    for extra in sizes:
        for seed in range(seeds):
            job = make_job(_config(seed, extra), schema, f"honest-{seed}")
            arrays = _weights(job, schema)
            for phase in ("autoencoder", "gan"):
                proposal = Proposal(SitePolicy(), RoundInstruction(1, phase, weights=arrays, job=job), schema, RECORDS)
                tally.add(*evaluate(proposal))
    return tally.to_dict()


def real_run_rates(strategies: list[str], seeds: int, steps: int, out: Path) -> dict:
    """Every instruction every hospital receives in every round of small honest federations."""
    per: dict[str, dict] = {}
    findings_seen: list[str] = []
    for strategy in strategies:
        tally = Tally()
        for seed in range(seeds):
            cfg = load_config(
                None,
                [
                    "data.phantom_records=300",
                    "train.rounds_autoencoder=2",
                    "train.rounds_gan=2",
                    f"train.local_steps_autoencoder={steps}",
                    f"train.local_steps_gan={steps}",
                    "train.generator_steps_per_round=4",
                    "train.batch_size=16",
                    *MODEL,
                    "evaluation.num_synthetic=60",
                    "evaluation.centralized_baseline=false",
                    "privacy.sample_rate=0.2",
                    'simulation.device="cpu"',
                    f'federation.strategy="{strategy}"',
                    f"seed={seed}",
                    f'out_dir="{out / f"{strategy}-{seed}"}"',
                ],
            )
            schema, sites = prepare_sites(cfg, late_seconds=0.0)
            transport = InProcessTransport.from_sites(sites)

            def record(p: Proposal, tally: Tally = tally) -> None:
                refusal, hits = evaluate(p)
                findings_seen.extend(hits.values())
                tally.add(refusal, hits)
                return None

            for service in transport.services.values():
                service.guardrails = [record, *GUARDRAILS]  # type: ignore[list-item]
            run_federation(cfg, schema, transport)
        per[strategy] = tally.to_dict()
    return {"strategies": per, "findings": findings_seen[:20]}


def print_table(title: str, rows: dict[str, dict]) -> None:
    names = [d.__name__ for d in DETECTORS]
    short = [n[:10] for n in names]
    print(f"\n{title}")
    print(f"{'case':44s} {'n':>5s} {'refused':>8s} {'any-det':>8s} " + " ".join(f"{s:>10s}" for s in short) + "  rules")
    for name, r in rows.items():
        rates = " ".join(f"{r['detector_rates'][n]:10.2f}" for n in names)
        rules = ", ".join(f"{k}:{v}" for k, v in sorted(r["rules"].items()))
        print(
            f"{name:44s} {r['proposals']:5d} {r['refusal_rate']:8.2f} {r['detectors_any_rate']:8.2f} {rates}  {rules}"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON results")
    parser.add_argument("--attack-seeds", type=int, default=50, help="seeds per threat model")
    parser.add_argument("--init-seeds", type=int, default=20, help="fresh honest initializations per model size")
    parser.add_argument("--run-seeds", type=int, default=2, help="real federations per strategy")
    parser.add_argument("--run-steps", type=int, default=3, help="local steps per round in the real runs")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    started = time.time()
    schema = make_phantom(RECORDS, 2, 32, seed=0).schema
    attacks = attack_rates(schema, args.attack_seeds)
    fresh = fresh_init_rates(schema, args.init_seeds)
    with tempfile.TemporaryDirectory() as tmp:
        runs = real_run_rates(["fedavg", "ring"], args.run_seeds, args.run_steps, Path(tmp))
    honest = {"fresh-init": fresh, **{f"real-run/{k}": v for k, v in runs["strategies"].items()}}
    print_table(
        "Attacks: detection (refused = any guardrail; columns = share of cases each detector fires on)", attacks
    )
    print_table("Honest: false positives (every proposal; real runs: every round x hospital)", honest)
    if runs["findings"]:
        print("\nfindings on honest weights:", *runs["findings"], sep="\n  ")
    result = {
        "settings": vars(args) | {"out": str(args.out)},
        "attacks": attacks,
        "honest": honest,
        "honest_findings": runs["findings"],
        "seconds": time.time() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwrote {args.out} ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
