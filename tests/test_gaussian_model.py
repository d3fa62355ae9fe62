"""The Gaussian latent model: its representation, what one record can change in each release, the
noise each release carries, the ledger it charges, and a whole run through the federation.

The exact privacy loss of the model is that of one Gaussian mechanism: the three releases add noise
of the same sigma to vectors whose per-record norms have squares adding up to 1, and Gaussian
mechanisms compose exactly (their privacy-loss distributions are Gaussian). The test computes that
epsilon from the analytic Gaussian-mechanism formula (Balle & Wang, "Improving the Gaussian
Mechanism for Differential Privacy") and checks that what the ledger reports is never smaller.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import REPRODUCIBLE, check_contract, tiny_config
from scipy.optimize import brentq
from scipy.stats import norm
from sites import job_for

from fedsynth.config import load_config
from fedsynth.data.phantom import make_phantom
from fedsynth.errors import ConfigError
from fedsynth.hospital import Hospital
from fedsynth.hospital.plan import planned_history, resolve_plan
from fedsynth.models.gaussian import (
    PHASE_MODULE,
    clip_rows,
    phase_sensitivity,
    sym_to_vector,
    table_rows,
    table_vectors,
    vector_to_sym,
)
from fedsynth.models.generator import build_generator
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.privacy.randomness import ReproducibleRandomness
from fedsynth.protocol import RoundInstruction
from fedsynth.simulation.engines import simulate_in_process

GAUSSIAN = ["model.latent_model=gaussian", "train.schedule=gaussian"]


def gaussian_config(*overrides: str):
    return load_config(None, [*GAUSSIAN, "site_policy.lifetime_epsilon_budget=0", *overrides])


def exact_gaussian_epsilon(sigma: float, delta: float) -> float:
    """Smallest epsilon of the Gaussian mechanism (sensitivity 1, noise sigma) at ``delta``."""

    def delta_at(eps: float) -> float:
        return norm.cdf(-eps * sigma + 1 / (2 * sigma)) - math.exp(eps) * norm.cdf(-eps * sigma - 1 / (2 * sigma))

    return brentq(lambda e: delta_at(e) - delta, 0.0, 500.0)


# -- representation ------------------------------------------------------------------------------
def test_table_representation_round_trips_and_uses_only_public_bounds():
    records = make_phantom(50, 2, 16, seed=3)
    schema = records.schema
    clinical = torch.as_tensor(records.clinical)
    vectors = table_vectors(clinical, schema)
    assert torch.all(vectors.norm(dim=1) <= 1 + 1e-9)
    back = table_rows(vectors.numpy(), schema)
    for j, col in enumerate(schema.columns):
        expected = (
            np.clip(records.clinical[:, j], col.low, col.high) if col.kind == "numeric" else records.clinical[:, j]
        )
        np.testing.assert_allclose(back[:, j], expected, rtol=1e-5, atol=1e-4 * (col.high or 1))
    # A record's vector does not depend on the other records (nothing is fitted on the data).
    alone = table_vectors(clinical[:1], schema)
    torch.testing.assert_close(alone[0], vectors[0])


def test_symmetric_matrices_travel_as_norm_preserving_vectors():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 7, generator=g, dtype=torch.float64)
    m = a + a.T
    v = sym_to_vector(m)
    assert v.numel() == 7 * 8 // 2
    torch.testing.assert_close(v.norm(), torch.linalg.matrix_norm(m))
    torch.testing.assert_close(vector_to_sym(v, 7), m)


# -- what one record can change ------------------------------------------------------------------
def _hospital(cfg, records, run_id="run-g"):
    plan = resolve_plan(cfg.privacy, cfg.train, cfg.site_policy, len(records), PrivacyLedger(1e-5), run_id)
    assert not isinstance(plan, str), plan
    return Hospital(0, records, job_for(cfg, records, run_id), plan), plan


def _adversarial_state(model, seed: int) -> None:
    """Released sums a server may send instead of honest ones: huge and random."""
    g = torch.Generator().manual_seed(seed)
    for module in PHASE_MODULE.values():
        for buf in getattr(model.gaussian, module).buffers():
            buf.copy_(torch.randn(buf.shape, generator=g) * 1e3)


@pytest.mark.parametrize("phase", ["image-mean", "image-basis", "latent-moments"])
@pytest.mark.parametrize("adversarial", [False, True])
def test_one_record_moves_a_release_by_at_most_its_sensitivity(phase, adversarial):
    cfg = gaussian_config("privacy.enabled=false", "site_policy.require_dp=false")
    records = make_phantom(40, 2, 16, seed=5)
    hospital, _ = _hospital(cfg, records)
    model = hospital.model.gaussian
    if adversarial:
        _adversarial_state(hospital.model, seed=11)
    else:  # the honest state after the earlier releases of a non-private run
        for r, earlier in enumerate(cfg.train.phases[: cfg.train.phases.index(phase)], start=1):
            hospital.train_round(RoundInstruction(r, earlier), ReproducibleRandomness(0, 0).mechanism(r))
    s = phase_sensitivity(cfg.train, phase)
    images, clinical, labels = (
        torch.as_tensor(records.images),
        torch.as_tensor(records.clinical),
        torch.as_tensor(records.labels),
    )

    def release(index):
        idx = torch.as_tensor(index)
        if phase == "image-mean":
            parts = [model.mean_contributions(images[idx], labels[idx])]
        elif phase == "image-basis":
            parts = list(model.basis_contributions(images[idx], labels[idx]).values())
        else:
            parts = list(model.moment_contributions(images[idx], clinical[idx], labels[idx]).values())
        return torch.cat([p.flatten() for p in parts]) * s  # what the noise is added to

    base = list(range(30))
    largest = 0.0
    for extra in range(30, 40):
        change = (release([*base, extra]) - release(base)).norm().item()
        largest = max(largest, change)
    assert largest <= s * (1 + 1e-9)
    # the bound is not vacuous: records move the release, up to the bound under adversarial state
    assert largest > (0.5 * s if adversarial else 0.0)


def test_latent_vectors_are_clipped_whatever_the_server_sent():
    cfg = gaussian_config()
    records = make_phantom(40, 2, 16, seed=6)
    hospital, _ = _hospital(cfg, records)
    _adversarial_state(hospital.model, seed=2)
    u = hospital.model.gaussian.latents(
        torch.as_tensor(records.images), torch.as_tensor(records.clinical), torch.as_tensor(records.labels)
    )
    assert torch.all(u.norm(dim=1) <= 1 + 1e-9)
    assert torch.all(clip_rows(u * 5).norm(dim=1) <= 1 + 1e-9)


# -- noise and ledger ----------------------------------------------------------------------------
def test_each_release_carries_the_noise_the_ledger_charges():
    cfg = gaussian_config("privacy.noise_multiplier=2.0", *REPRODUCIBLE)
    records = make_phantom(80, 2, 16, seed=7)
    hospital, plan = _hospital(cfg, records)
    noisy = hospital.model.gaussian
    exact = build_generator(records.schema, cfg.model, cfg.seed).gaussian
    for r, phase in enumerate(cfg.train.phases, start=1):
        event = plan.event(phase, r, 1, cfg.train)
        assert (event.sample_rate, event.steps, event.noise_multiplier) == (1.0, 1, 2.0)
        assert event.sensitivity == pytest.approx(phase_sensitivity(cfg.train, phase))
        hospital.train_round(RoundInstruction(r, phase), ReproducibleRandomness(1, 0).mechanism(r))
        module = PHASE_MODULE[phase]
        # the exact sums at the same public state (the earlier releases, noise included)
        exact.load_state_dict(noisy.state_dict())
        images, clinical, labels = (
            torch.as_tensor(records.images),
            torch.as_tensor(records.clinical),
            torch.as_tensor(records.labels),
        )
        if phase == "image-mean":
            sums = {"sums": exact.mean_contributions(images, labels)}
        elif phase == "image-basis":
            sums = exact.basis_contributions(images, labels)
        else:
            sums = exact.moment_contributions(images, clinical, labels)
        residual = torch.cat([(getattr(getattr(noisy, module), k).double() - v).flatten() for k, v in sums.items()])
        expected = 2.0 / event.sensitivity
        assert residual.std().item() == pytest.approx(expected, rel=0.1 if residual.numel() > 1000 else 0.35)
        assert abs(residual.mean().item()) < 4 * expected / math.sqrt(residual.numel())


def test_a_gaussian_run_spends_exactly_one_gaussian_mechanism():
    cfg = gaussian_config("privacy.target_epsilon=10")
    plan = resolve_plan(cfg.privacy, cfg.train, cfg.site_policy, 1000, PrivacyLedger(1e-5), "run")
    assert not isinstance(plan, str)
    history = planned_history(cfg.train, plan.sample_rate, plan.noise_multiplier)
    assert [e.phase for e in history] == ["image-mean", "image-basis", "latent-moments"]
    assert sum(e.sensitivity**2 for e in history) == pytest.approx(1.0)
    reported = PrivacyLedger(1e-5, "rdp", history).epsilon()
    exact = exact_gaussian_epsilon(plan.noise_multiplier, 1e-5)
    assert reported >= exact
    assert reported <= 10.0 * (1 + 1e-6)
    assert exact > 0.6 * reported  # RDP is an upper bound, not a different mechanism


def test_gaussian_schedule_must_match_the_model_and_the_star():
    with pytest.raises(ConfigError, match="model.latent_model"):
        load_config(None, ["model.latent_model=gaussian"])
    with pytest.raises(ConfigError, match="federation.strategy"):
        load_config(None, [*GAUSSIAN, "federation.strategy=ring"])
    with pytest.raises(ConfigError, match="gaussian_mean_share"):
        load_config(None, [*GAUSSIAN, "train.gaussian_mean_share=0.6", "train.gaussian_basis_share=0.5"])


# -- whole runs ----------------------------------------------------------------------------------
def test_a_federated_gaussian_run_synthesizes_from_released_sums_only(tmp_path):
    cfg = tiny_config(tmp_path / "run", *GAUSSIAN, "data.phantom_records=3000", "evaluation.num_synthetic=400")
    summary = simulate_in_process(cfg)
    assert summary["rounds"] == 3
    assert summary["max_epsilon"] == pytest.approx(10.0, rel=0.01)
    check_contract(tmp_path / "run", shared=True)
    # The server only ever held the summed releases, yet the class mean images of the synthetic
    # records follow the real ones (anatomy: high correlation over pixels).
    from fedsynth.data.federated import load_federation
    from fedsynth.evaluation.run import load_run

    run = load_run(tmp_path / "run")
    fed = load_federation(cfg.data, cfg.federation.num_hospitals, cfg.seed)
    real = np.concatenate([h.images for h in fed.hospitals])
    labels = np.concatenate([h.labels for h in fed.hospitals])
    for c in range(2):
        real_mean = real[labels == c].mean(axis=0).ravel()
        syn_mean = run.synthetic.images[run.synthetic.labels == c].mean(axis=0).ravel()
        assert np.corrcoef(real_mean, syn_mean)[0, 1] > 0.8
        assert np.abs(syn_mean - real_mean).mean() < 0.5 * np.abs(real_mean - real_mean.mean()).mean()


def test_table_only_data_skip_the_image_releases(tmp_path):
    cfg = tiny_config(tmp_path / "run", *GAUSSIAN, "data.source=breast_cancer", "evaluation.num_synthetic=100")
    summary = simulate_in_process(cfg)
    assert summary["rounds"] == 1
    assert summary["max_epsilon"] == pytest.approx(10.0, rel=0.01)
    check_contract(tmp_path / "run")
    saved = load_config(tmp_path / "run" / "config.toml")
    assert (saved.train.gaussian_mean_share, saved.train.gaussian_basis_share) == (0.0, 0.0)
