"""A hospital trains with DP-SGD as its ledger says, refuses past its budget, and saves/restores
its whole state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsynth.config import load_config
from fedsynth.data.phantom import make_phantom
from fedsynth.hospital import Hospital
from fedsynth.hospital.store import HospitalStore
from fedsynth.privacy.accounting import compute_epsilon
from fedsynth.protocol import RoundInstruction

SMALL = [
    "train.rounds_autoencoder=1",
    "train.rounds_gan=2",
    "train.local_steps_autoencoder=3",
    "train.local_steps_gan=4",
    "train.generator_steps_per_round=2",
    "train.batch_size=16",
    "model.image_channels=8",
]


@pytest.fixture(scope="module")
def records():
    return make_phantom(120, 2, 32, seed=0)


def run_rounds(h: Hospital, rounds: range) -> list:
    return [h.train_round(RoundInstruction(r, h.config.train.phase_of_round(r))) for r in rounds]


def test_dp_settings_match_the_ledger(records) -> None:
    cfg = load_config(None, SMALL + ["privacy.target_epsilon=5"])
    h = Hospital(0, records, cfg)
    replies = run_rounds(h, range(1, 4))
    assert all(r.accepted for r in replies)
    events = h.ledger.events
    assert [e.phase for e in events] == ["autoencoder", "discriminator", "discriminator"]
    assert [e.steps for e in events] == [3, 4, 4]
    for net in (h.autoencoder, h.discriminator):
        assert net.optimizer.noise_multiplier == pytest.approx(events[0].noise_multiplier)
        assert net.optimizer.max_grad_norm == cfg.privacy.max_grad_norm
        assert net.optimizer.expected_batch_size == round(events[0].sample_rate * len(records))
    assert events[0].sample_rate == pytest.approx(16 / 120)
    # Target-epsilon mode: the full planned history spends the target, not more.
    spent = h.ledger.epsilon()
    assert spent == pytest.approx(compute_epsilon(events, cfg.privacy.delta, "rdp"))
    assert 0.95 * 5 <= spent <= 5
    assert replies[-1].metrics["epsilon"] == pytest.approx(spent)


def test_dp_step_clips_and_noises(records) -> None:
    """Per-sample gradients are clipped to C before summing, then Gaussian noise of std sigma*C is added."""
    sigma = 2.0
    cfg = load_config(None, SMALL + [f"privacy.noise_multiplier={sigma}", "privacy.epsilon_budget=1000"])
    h = Hospital(0, records, cfg)
    net = h.discriminator
    params = [p for p in net.module.parameters() if p.requires_grad]
    b = 8
    x = torch.randn(b, h.model.autoencoder.latent_dim) * 100  # huge inputs: per-sample norms >> C
    score, logits = net.forward(x, torch.zeros(b, dtype=torch.long))
    ((score.sum() + logits.sum()) * 1e3).backward()
    raw_norms = torch.stack([p.grad_sample.flatten(1).norm(dim=1) ** 2 for p in params]).sum(0).sqrt()
    assert (raw_norms > 10 * cfg.privacy.max_grad_norm).all()
    net.optimizer.pre_step()  # clip, sum, add noise, divide by the expected batch size
    clipped_sum = torch.cat([p.summed_grad.flatten() for p in params])
    assert clipped_sum.norm() <= b * cfg.privacy.max_grad_norm * (1 + 1e-5)
    expected_b = net.optimizer.expected_batch_size
    noise = torch.cat([p.grad.flatten() for p in params]) * expected_b - clipped_sum
    assert noise.std().item() == pytest.approx(sigma * cfg.privacy.max_grad_norm, rel=0.1)
    assert abs(noise.mean().item()) < 0.1 * sigma
    net.zero_grad()


def test_refuses_past_budget_and_says_why(records) -> None:
    cfg = load_config(None, SMALL + ["privacy.noise_multiplier=0.8", "privacy.epsilon_budget=3.0"])
    h = Hospital(0, records, cfg)
    replies = run_rounds(h, range(1, 4))
    refused = [r for r in replies if not r.accepted]
    assert refused, "a hospital with a small budget must refuse a round"
    first = refused[0]
    assert "refuses round" in first.refused and "budget 3" in first.refused
    assert first.weights is None
    spent = h.ledger.epsilon()
    assert spent is not None and spent <= 3.0
    # The refused round did not enter the ledger.
    assert first.server_round not in {e.round for e in h.ledger.events}


def test_non_private_baseline_reports_no_epsilon(records) -> None:
    cfg = load_config(None, SMALL + ["privacy.enabled=false"])
    h = Hospital(0, records, cfg)
    replies = run_rounds(h, range(1, 3))
    assert all(r.accepted for r in replies)
    assert h.ledger.epsilon() is None and not h.ledger.private
    assert all(e.noise_multiplier == 0 for e in h.ledger.events)


def test_state_restores_exactly(records, tmp_path) -> None:
    cfg = load_config(None, SMALL)
    straight = Hospital(0, records, cfg)
    run_rounds(straight, range(1, 4))

    first = Hospital(0, records, cfg)
    run_rounds(first, range(1, 3))
    store = HospitalStore(tmp_path)
    store.save(first.state_dict(), 2)
    resumed = Hospital(0, records, cfg)
    resumed.load_state_dict(store.load(store.latest_round()))
    run_rounds(resumed, range(3, 4))

    a, b = straight.model.weights(), resumed.model.weights()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6, err_msg=k)
    assert resumed.ledger.events == straight.ledger.events


def test_state_of_another_hospital_is_rejected(records) -> None:
    cfg = load_config(None, SMALL)
    state = Hospital(0, records, cfg).state_dict()
    with pytest.raises(ValueError, match="belongs to hospital 0"):
        Hospital(1, records, cfg).load_state_dict(state)
