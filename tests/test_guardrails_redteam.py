"""A site refuses a server that tries to reconstruct records from its updates, naming the rule,
and never refuses an honest model: code-shipping ("Robbing the Fed"), tiny batches, imprint rows
planted in honest layers, trap weights ("When the Curious Abandon Honesty"), and an adaptive
attacker who perturbs the planted rows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from sites import job_for, service_for

from fedsynth.config import load_config
from fedsynth.data.phantom import make_phantom
from fedsynth.federation.server import run_federation
from fedsynth.hospital import detectors
from fedsynth.hospital.guardrails import GUARDRAILS, Proposal, first_refusal, inspected_layers
from fedsynth.models.architectures import build_architecture
from fedsynth.models.imprint import IMPRINT_ARCHITECTURE
from fedsynth.protocol import Arrays, Job, RoundInstruction
from fedsynth.simulation.inprocess import InProcessTransport
from fedsynth.simulation.sites import prepare_sites
from fedsynth.site.code import app_code_digest
from fedsynth.site.policy import BUILTIN_ARCHITECTURE, SitePolicy

SMALL = ["model.image_channels=8", "privacy.sample_rate=0.2", "train.local_steps_autoencoder=1"]
TABLE = (
    "autoencoder.table_encoder.net.0.weight",
    "autoencoder.table_encoder.net.0.bias",
    "autoencoder.table_encoder.net.2.weight",
)
DISCRIMINATOR = ("discriminator.body.0.weight", "discriminator.body.0.bias", "discriminator.body.2.weight")
BOTH = [IMPRINT_ARCHITECTURE, BUILTIN_ARCHITECTURE]


@pytest.fixture(scope="module")
def records():
    return make_phantom(80, 2, 32, seed=0)


def honest_weights(job: Job, records) -> Arrays:
    model = build_architecture(job.architecture, records.schema, job.model, job.seed, job.architecture_options)
    return dict(model.weights())


def imprint(arrays: Arrays, target: tuple[str, str, str], bins: int, scale: float, seed: int, perturb: float = 0.0):
    """``arrays`` with K rows ``scale * v``, a bias ladder and identical next-layer columns in
    ``target``; ``perturb`` adds noise of that share of each row's and column's norm."""
    rng = np.random.default_rng(seed)
    out = dict(arrays)
    w, b, nxt = (np.array(arrays[k], dtype=np.float64) for k in target)
    rows = np.sort(rng.choice(w.shape[0], bins, replace=False))
    v = rng.standard_normal(w.shape[1])
    v /= np.linalg.norm(v)
    h = rng.uniform(0, 1, (256, w.shape[1])) @ v
    c = np.quantile(h, np.arange(bins) / bins)
    w[rows] = scale * (v + perturb * rng.standard_normal((bins, w.shape[1])) / np.sqrt(w.shape[1]))
    b[rows] = -scale * c
    column = nxt[:, rows[0]]
    noise = perturb * np.linalg.norm(column) * rng.standard_normal((nxt.shape[0], bins)) / np.sqrt(nxt.shape[0])
    nxt[:, rows] = column[:, None] + noise
    out.update({k: a.astype(np.float32) for k, a in zip(target, (w, b, nxt))})
    return out


def trap(arrays: Arrays, name: str, count: int, seed: int) -> Arrays:
    """``arrays`` with ``count`` trap rows in ``name``: magnitudes m placed as +m and -1.2 m."""
    rng = np.random.default_rng(seed)
    w = np.array(arrays[name], dtype=np.float64)
    half = w.shape[1] // 2
    for r in rng.choice(w.shape[0], count, replace=False):
        m = np.abs(rng.standard_normal(half)) * 0.3
        where = rng.permutation(w.shape[1])
        w[r] = 0.0
        w[r, where[:half]], w[r, where[half : 2 * half]] = m, -1.2 * m
    return {**arrays, name: w.astype(np.float32)}


def proposal(job: Job, records, weights: Arrays, phase: str = "autoencoder", **policy) -> Proposal:
    instruction = RoundInstruction(1, phase, weights=weights, job=job)
    return Proposal(dataclasses.replace(SitePolicy(), **policy), instruction, records.schema, len(records))


def code_shipping_job(records, digest: str | None = None, **train) -> Job:
    cfg = load_config(None, [*SMALL, 'train.optimizer="sgd"', *(f"{k}={v}" for k, v in train.items())])
    job = job_for(cfg, records)
    return dataclasses.replace(
        job, architecture=IMPRINT_ARCHITECTURE, architecture_options={"bins": 10}, code_digest=digest or job.code_digest
    )


# -- code-shipping -------------------------------------------------------------------------------
def test_a_site_that_accepts_only_the_builtin_architecture_refuses_code_shipping(records, tmp_path) -> None:
    job = code_shipping_job(records)
    reply = service_for(tmp_path, records).handle(RoundInstruction(1, "autoencoder", job=job))
    assert not reply.accepted and reply.refused.startswith("rule architecture_accepted:")


def test_a_site_that_accepts_the_architecture_still_refuses_code_it_did_not_approve(records, tmp_path) -> None:
    job = code_shipping_job(records, digest="f" * 64)
    reply = service_for(tmp_path, records, architectures=BOTH).handle(RoundInstruction(1, "autoencoder", job=job))
    assert not reply.accepted and reply.refused.startswith("rule code_pinned:")
    approved = proposal(job, records, honest_weights(job, records), architectures=BOTH, approved_code=("f" * 64,))
    assert first_refusal(approved) is None or not first_refusal(approved).startswith("rule code_pinned")


def test_planted_imprint_block_in_shipped_code_is_refused_even_when_the_code_is_approved(records) -> None:
    job = code_shipping_job(records, digest="f" * 64)
    crafted = imprint(honest_weights(job, records), tuple(f"autoencoder.image_encoder.imprint.{n}" for n in (
        "first.weight", "first.bias", "second.weight")), 10, 1.0, seed=0)  # fmt: skip
    reason = first_refusal(proposal(job, records, crafted, architectures=BOTH, approved_code=("f" * 64,)))
    assert reason is not None and reason.startswith("rule weights_look_honest:")


# -- tiny batches ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "train",
    [{"privacy.sample_rate": 1 / 80}, {"privacy.enabled": "false", "train.sampling": '"fixed"', "train.batch_size": 1}],
    ids=["poisson-rate-1/n", "fixed-batch-1"],
)
def test_a_tiny_batch_is_refused_without_revealing_the_record_count(records, tmp_path, train) -> None:
    cfg = load_config(None, [*SMALL, *(f"{k}={v}" for k, v in train.items())])
    service = service_for(tmp_path, records, require_dp=False)
    reply = service.handle(RoundInstruction(1, "autoencoder", job=job_for(cfg, records)))
    assert not reply.accepted and reply.refused.startswith("rule batch_floor:")
    assert "80" not in reply.refused and "1.0 records" not in reply.refused


# -- weights-only ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "phase", "bins", "scale"),
    [(TABLE, "autoencoder", 16, 1000.0), (TABLE, "autoencoder", 10, 1.0), (DISCRIMINATOR, "gan", 64, 1.0)],
    ids=["table-encoder-scaled", "table-encoder-plain", "discriminator"],
)
def test_imprint_rows_planted_in_an_honest_layer_are_refused(records, tmp_path, target, phase, bins, scale) -> None:
    cfg = load_config(None, SMALL)
    job = job_for(cfg, records)
    crafted = imprint(honest_weights(job, records), target, bins, scale, seed=1)
    reply = service_for(tmp_path, records).handle(RoundInstruction(1, phase, weights=crafted, job=job))
    assert not reply.accepted and reply.refused.startswith("rule weights_look_honest:")
    assert target[0] in reply.refused or target[2] in reply.refused


@pytest.mark.parametrize(("name", "phase"), [(TABLE[0], "autoencoder"), (DISCRIMINATOR[0], "gan")])
def test_trap_rows_are_refused(records, name, phase) -> None:
    job = job_for(load_config(None, SMALL), records)
    crafted = trap(honest_weights(job, records), name, 20, seed=2)
    reason = first_refusal(proposal(job, records, crafted, phase))
    assert reason is not None and reason.startswith("rule weights_look_honest:") and "trap" in reason


@pytest.mark.parametrize("perturb", [0.35, 0.5])
@pytest.mark.parametrize(("target", "phase", "scale"), [(TABLE, "autoencoder", 10.0), (DISCRIMINATOR, "gan", 1.0)])
def test_perturbed_imprint_rows_slip_past_the_duplicate_check_but_not_the_site(records, target, phase, scale, perturb):
    job = job_for(load_config(None, SMALL), records)
    crafted = imprint(honest_weights(job, records), target, 32, scale, seed=3, perturb=perturb)
    p = proposal(job, records, crafted, phase)
    (layer,) = [x for x in inspected_layers(p) if x.name == target[0]]
    assert detectors.identical_rows(layer) is None  # the adaptive attacker beat the simplest check
    reason = first_refusal(p)
    assert reason is not None and reason.startswith("rule weights_look_honest:")


def test_ring_peers_are_checked_too(records) -> None:
    job = job_for(load_config(None, SMALL), records)
    honest = honest_weights(job, records)
    crafted = imprint(honest, DISCRIMINATOR, 32, 1.0, seed=4)
    instruction = RoundInstruction(2, "gan", weights=None, merge=[(crafted, 1.0)], job=job)
    reason = first_refusal(Proposal(SitePolicy(), instruction, records.schema, len(records)))
    assert reason is not None and reason.startswith("rule weights_look_honest:")
    assert first_refusal(Proposal(SitePolicy(check_weights=False), instruction, records.schema, 80)) is None


# -- no false refusals -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_fresh_honest_initializations_are_never_refused(records, seed) -> None:
    sizes = ["model.table_hidden=32", "model.table_hidden=64", "model.gan_hidden=256"][seed % 3]
    job = job_for(load_config(None, [*SMALL, sizes, f"seed={seed}"]), records)
    for phase in ("autoencoder", "gan"):
        assert first_refusal(proposal(job, records, honest_weights(job, records), phase)) is None


def test_every_round_of_a_real_run_passes_every_detector(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", "federation.strategy=ring")
    schema, sites = prepare_sites(cfg, late_seconds=0.0)
    transport = InProcessTransport.from_sites(sites)
    seen: list[tuple[int, str | None]] = []

    def record(p: Proposal) -> None:
        found = [f for layer in inspected_layers(p) for f in detectors.findings(layer).values()]
        seen.append((p.instruction.server_round, "; ".join(found) or first_refusal(p)))
        return None

    for service in transport.services.values():
        service.guardrails = [record, *GUARDRAILS]  # type: ignore[list-item]
    run_federation(cfg, schema, transport)
    assert sorted({r for r, _ in seen}) == [1, 2, 3]
    assert [x for x in seen if x[1] is not None] == []


def test_the_code_pin_defaults_to_the_installed_code(records) -> None:
    job = job_for(load_config(None, SMALL), records)
    assert job.code_digest == app_code_digest()
    unnamed = dataclasses.replace(job, code_digest="")
    reason = first_refusal(proposal(unnamed, records, honest_weights(job, records)))
    assert reason is not None and reason.startswith("rule code_pinned:")
