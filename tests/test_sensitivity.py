"""What one record can change: measured on the mechanism that runs, against what the ledger charges.

The ledger charges every DP step at sensitivity C (one clipped row per record). These tests add one
record to a batch and measure the norm of the change of the summed clipped gradient, with the
weights an adversarial server could send; and they count the noise draws and sample rates of a
whole round against the ledger's entry for it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from sites import job_for, service_for

from fedsynth.config import load_config
from fedsynth.data.phantom import make_phantom
from fedsynth.hospital import Hospital
from fedsynth.hospital.plan import resolve_plan
from fedsynth.models.imprint import IMPRINT_ARCHITECTURE
from fedsynth.privacy import dpsgd, randomness
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.protocol import RoundInstruction

SMALL = [
    "train.batch_size=16",
    "model.image_channels=8",
    "privacy.noise_multiplier=1.0",
    "privacy.max_grad_norm=0.7",
    "privacy.sample_rate=0.2",
    "site_policy.lifetime_epsilon_budget=0",
    "train.rounds_autoencoder=1",
    "train.rounds_gan=1",
    "train.local_steps_autoencoder=4",
    "train.local_steps_gan=5",
    "train.generator_steps_per_round=2",
]


@pytest.fixture(scope="module")
def setup():
    records = make_phantom(60, 2, 32, seed=1)
    cfg = load_config(None, SMALL)
    plan = resolve_plan(cfg.privacy, cfg.train, cfg.site_policy, len(records), PrivacyLedger(1e-5), "run")
    hospital = Hospital(0, records, job_for(cfg, records), plan)
    return cfg, hospital


def _adversarial(module: torch.nn.Module, scale: float, seed: int) -> None:
    """Weights a server may choose: large and random (gradients far above the clipping norm)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def _discriminator_contribution(h: Hospital, batch: np.ndarray, extra: int, g: torch.Generator, paired: bool) -> float:
    """Norm of the change of the summed clipped gradient when record ``extra`` joins ``batch``."""
    latents = h.encode_all()
    d = latents.shape[1]
    fake = torch.randn(len(batch) + 1, d, generator=g) * 3  # the new record's fake row is drawn for it
    fake_labels = torch.randint(2, (len(batch) + 1,), generator=g)

    def summed(rows: np.ndarray, n: int) -> torch.Tensor:
        idx = torch.as_tensor(rows)
        real, labels = latents[idx], h.labels[idx]
        if paired:  # the hospital's own step
            loss, _ = h.discriminator_loss(real, labels, fake[:n], fake_labels[:n])
        else:  # real and fake as separate rows of the batch: the layout the ledger must not charge at C
            score, logits = h.discriminator.forward(torch.cat([real, fake[:n]]), torch.cat([labels, fake_labels[:n]]))
            target = torch.cat([torch.ones(n), torch.zeros(n)])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                score, target, reduction="sum"
            ) + torch.nn.functional.cross_entropy(logits[:n], labels, reduction="sum")
        return h.discriminator.clipped_sum(loss)

    without = summed(batch, len(batch))
    with_record = summed(np.append(batch, extra), len(batch) + 1)
    return float((with_record - without).norm())


def test_one_record_moves_the_discriminator_step_by_at_most_C(setup) -> None:
    cfg, h = setup
    clip = cfg.privacy.max_grad_norm
    rng = np.random.default_rng(0)
    worst_paired, worst_unpaired = 0.0, 0.0
    for trial in range(12):
        _adversarial(h.model.discriminator, scale=0.5 + trial, seed=trial)
        g = torch.Generator().manual_seed(trial)
        batch = rng.choice(59, size=10, replace=False)
        extra = int(rng.choice(np.setdiff1d(np.arange(60), batch)))
        worst_paired = max(worst_paired, _discriminator_contribution(h, batch, extra, g, paired=True))
        g = torch.Generator().manual_seed(trial)
        worst_unpaired = max(worst_unpaired, _discriminator_contribution(h, batch, extra, g, paired=False))
    assert worst_paired <= clip * (1 + 1e-4), f"one record moved the sum by {worst_paired / clip:.3f} C"
    assert worst_paired > 0.5 * clip  # the measurement sees a full contribution
    # The measurement would catch the unpaired layout, whose real and fake rows are clipped apart.
    assert worst_unpaired > 1.2 * clip


def _autoencoder_worst(h: Hospital) -> float:
    """The largest change of the autoencoder step's summed clipped gradient when one record joins
    a batch of 8, over a few adversarial weight draws."""
    worst = 0.0
    for trial in range(4):
        _adversarial(h.model.autoencoder, scale=0.3, seed=100 + trial)
        idx = torch.arange(8)

        def summed(rows: torch.Tensor) -> torch.Tensor:
            noise = torch.zeros(len(rows), h.model.autoencoder.latent_dim)
            per_sample = h.autoencoder.forward(h.images[rows], h.clinical[rows], h.labels[rows], noise)
            return h.autoencoder.clipped_sum(per_sample.sum())

        worst = max(worst, float((summed(torch.cat([idx, torch.tensor([20 + trial])])) - summed(idx)).norm()))
    return worst


def test_one_record_moves_the_autoencoder_step_by_at_most_C(setup) -> None:
    cfg, h = setup
    clip = cfg.privacy.max_grad_norm
    assert 0.5 * clip < _autoencoder_worst(h) <= clip * (1 + 1e-4)


def test_the_shipped_imprint_architecture_with_plain_sgd_is_still_clipped_per_record() -> None:
    """A code-shipping server's architecture (an imprint block in front of the image encoder) and
    optimizer change what the step computes, not what one record can move: still at most C."""
    records = make_phantom(60, 2, 32, seed=1)
    cfg = load_config(None, [*SMALL, 'train.optimizer="sgd"'])
    plan = resolve_plan(cfg.privacy, cfg.train, cfg.site_policy, len(records), PrivacyLedger(1e-5), "run")
    job = replace(job_for(cfg, records), architecture=IMPRINT_ARCHITECTURE, architecture_options={"bins": 10})
    h = Hospital(0, records, job, plan)
    assert any("imprint" in name for name, _ in h.model.autoencoder.named_parameters())
    clip = cfg.privacy.max_grad_norm
    assert 0.5 * clip < _autoencoder_worst(h) <= clip * (1 + 1e-4)


def test_the_ledger_is_the_mechanism_that_ran(tmp_path, monkeypatch) -> None:
    """Count what a round really did (noise draws, their std, the sample rate it sampled at) and
    compare with the ledger's entry for that round."""
    records = make_phantom(60, 2, 32, seed=2)
    cfg = load_config(None, SMALL)
    noise_calls: list[tuple[int, float]] = []
    sample_rates: list[float] = []
    real_noise = dpsgd._MechanismNoiseOptimizer.add_noise
    real_sample = randomness._SecureMechanism.poisson_indices

    def counting_noise(self):
        noise_calls.append((id(self), self.noise_multiplier * self.max_grad_norm))
        return real_noise(self)

    def counting_sample(self, n, rate):
        sample_rates.append(rate)
        return real_sample(self, n, rate)

    monkeypatch.setattr(dpsgd._MechanismNoiseOptimizer, "add_noise", counting_noise)
    monkeypatch.setattr(randomness._SecureMechanism, "poisson_indices", counting_sample)
    service = service_for(tmp_path, records, lifetime_epsilon_budget=0.0)
    job = job_for(cfg, records)
    for r in (1, 2):
        before = len(noise_calls)
        reply = service.handle(RoundInstruction(r, cfg.train.phase_of_round(r), job=job))
        event = reply.ledger["history"][-1]
        calls = noise_calls[before:]
        assert len(calls) == event["steps"] and len({c[0] for c in calls}) == 1  # one network, every step
        assert all(std == pytest.approx(event["noise_multiplier"] * event["max_grad_norm"]) for _, std in calls)
        assert event["max_grad_norm"] == cfg.privacy.max_grad_norm and event["sensitivity"] == 1.0
    assert set(sample_rates) == {reply.ledger["history"][0]["sample_rate"]}
