"""A hospital trains with DP-SGD as its ledger says, refuses past its budget, and saves/restores
its whole state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sites import job_for, service_for

from fedsynth.config import load_config
from fedsynth.data.phantom import make_phantom
from fedsynth.hospital import Hospital
from fedsynth.hospital.plan import resolve_plan
from fedsynth.hospital.store import HospitalStore
from fedsynth.privacy.accounting import compute_epsilon
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.privacy.randomness import ReproducibleRandomness, SecureRandomness
from fedsynth.protocol import RoundInstruction

SMALL = [
    "train.rounds_autoencoder=1",
    "train.rounds_gan=2",
    "train.local_steps_autoencoder=3",
    "train.local_steps_gan=4",
    "train.generator_steps_per_round=2",
    "train.batch_size=16",
    "model.image_channels=8",
    "privacy.sample_rate=0.15",
]


@pytest.fixture(scope="module")
def records():
    return make_phantom(120, 2, 32, seed=0)


def run_rounds(service, cfg, records, rounds: range, run_id: str = "run-a") -> list:
    job = job_for(cfg, records, run_id)
    return [service.handle(RoundInstruction(r, cfg.train.phase_of_round(r), job=job)) for r in rounds]


def plan_of(cfg, records):
    plan = resolve_plan(
        cfg.privacy, cfg.train, cfg.site_policy, len(records), PrivacyLedger(cfg.privacy.delta), "run-a"
    )
    assert not isinstance(plan, str), plan
    return plan


def test_dp_settings_match_the_ledger(records, tmp_path) -> None:
    cfg = load_config(None, SMALL + ["privacy.target_epsilon=5"])
    service = service_for(tmp_path, records)
    replies = run_rounds(service, cfg, records, range(1, 4))
    assert all(r.accepted for r in replies)
    events = service.ledger_file.events()
    assert [e.phase for e in events] == ["autoencoder", "discriminator", "discriminator"]
    assert [e.steps for e in events] == [3, 4, 4]
    assert all(e.sensitivity == 1.0 and e.relation == "add-remove" and e.run == "run-a" for e in events)
    hospital = service._resident.hospital
    for net in (hospital.autoencoder, hospital.discriminator):
        assert net.optimizer.noise_multiplier == pytest.approx(events[0].noise_multiplier)
        assert net.optimizer.max_grad_norm == cfg.privacy.max_grad_norm
        # The noisy sum is averaged by the public batch size, not by anything derived from n.
        assert net.optimizer.expected_batch_size == cfg.train.batch_size
    assert events[0].sample_rate == pytest.approx(0.15)
    # Target-epsilon mode: the full planned history spends the target, not more.
    spent = compute_epsilon(events, cfg.privacy.delta, "rdp")
    assert 0.95 * 5 <= spent <= 5
    assert replies[-1].metrics["epsilon"] == pytest.approx(spent)
    assert replies[-1].num_examples is None  # the record count stays private by default


def test_dp_step_clips_and_noises(records) -> None:
    """Per-sample gradients are clipped to C before summing, then Gaussian noise of std sigma*C is added
    (the reference engine, whose per-sample gradients are visible; tests/test_fast_dpsgd.py holds the
    ghost engine to it)."""
    sigma = 2.0
    cfg = load_config(
        None,
        SMALL
        + [f"privacy.noise_multiplier={sigma}", "site_policy.lifetime_epsilon_budget=0", 'train.dp_engine="hooks"'],
    )
    h = Hospital(0, records, job_for(cfg, records), plan_of(cfg, records))
    net = h.discriminator
    net.use_randomness(SecureRandomness().mechanism(0))
    params = [p for p in net.module.parameters() if p.requires_grad]
    b = 8
    x = torch.randn(b, h.model.autoencoder.latent_dim) * 100  # huge inputs: per-sample norms >> C
    score, logits = net.forward(x, torch.zeros(b, dtype=torch.long))
    ((score.sum() + logits.sum()) * 1e3).backward()
    raw_norms = torch.stack([p.grad_sample.flatten(1).norm(dim=1) ** 2 for p in params]).sum(0).sqrt()
    assert (raw_norms > 10 * cfg.privacy.max_grad_norm).all()
    net.optimizer.clip_and_accumulate()
    clipped_sum = torch.cat([p.summed_grad.flatten() for p in params]).clone()
    assert clipped_sum.norm() <= b * cfg.privacy.max_grad_norm * (1 + 1e-5)
    net.optimizer.add_noise()
    net.optimizer.scale_grad()
    expected_b = net.optimizer.expected_batch_size
    noise = torch.cat([p.grad.flatten() for p in params]) * expected_b - clipped_sum
    assert noise.std().item() == pytest.approx(sigma * cfg.privacy.max_grad_norm, rel=0.1)
    assert abs(noise.mean().item()) < 0.1 * sigma
    net.zero_grad()


def test_refuses_past_budget_and_says_why(records, tmp_path) -> None:
    cfg = load_config(None, SMALL + ["privacy.noise_multiplier=0.8", "privacy.epsilon_budget=3.0"])
    service = service_for(tmp_path, records)
    replies = run_rounds(service, cfg, records, range(1, 4))
    refused = [r for r in replies if not r.accepted]
    assert refused, "a hospital with a small budget must refuse a round"
    first = refused[0]
    assert "refuses round" in first.refused and "budget 3" in first.refused
    assert first.weights is None
    ledger = PrivacyLedger(cfg.privacy.delta, "rdp", service.ledger_file.events())
    spent = ledger.epsilon()
    assert spent is not None and spent <= 3.0
    # The refused round did not enter the ledger.
    assert first.server_round not in {e.round for e in ledger.events}


def test_non_private_baseline_reports_no_epsilon(records, tmp_path) -> None:
    cfg = load_config(None, SMALL + ["privacy.enabled=false"])
    service = service_for(tmp_path, records, require_dp=False)
    replies = run_rounds(service, cfg, records, range(1, 3))
    assert all(r.accepted for r in replies)
    ledger = PrivacyLedger(cfg.privacy.delta, "rdp", service.ledger_file.events())
    assert ledger.epsilon() is None and not ledger.private
    assert all(e.noise_multiplier == 0 for e in ledger.events)


def test_state_restores_exactly(records, tmp_path) -> None:
    cfg = load_config(None, SMALL)
    job, plan = job_for(cfg, records), plan_of(cfg, records)
    randomness = ReproducibleRandomness(seed=7, hospital_id=0)

    def train(h: Hospital, rounds: range) -> None:
        for r in rounds:
            h.train_round(RoundInstruction(r, cfg.train.phase_of_round(r), job=job), randomness.mechanism(r - 1))

    straight = Hospital(0, records, job, plan)
    train(straight, range(1, 4))
    first = Hospital(0, records, job, plan)
    train(first, range(1, 3))
    store = HospitalStore(tmp_path, job.run_id)
    store.save(first.state_dict(), 2)
    resumed = Hospital(0, records, job, plan)
    resumed.load_state_dict(store.load(store.latest_round()))
    train(resumed, range(3, 4))

    a, b = straight.model.weights(), resumed.model.weights()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6, err_msg=k)


def test_state_of_another_hospital_is_rejected(records) -> None:
    cfg = load_config(None, SMALL)
    job, plan = job_for(cfg, records), plan_of(cfg, records)
    state = Hospital(0, records, job, plan).state_dict()
    with pytest.raises(ValueError, match="belongs to hospital 0"):
        Hospital(1, records, job, plan).load_state_dict(state)
