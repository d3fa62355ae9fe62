"""The ghost DP-SGD engine (train.dp_engine = "ghost") against the reference (Opacus' hooks).

For each private network, on the same batch and the same weights: the clipped sum and per-sample
norms equal the reference's, one step with the same noise gives the same weights (and exactly
weights - lr * (clipped sum + the ledger's noise) / normalizer), a record contributes at most C
however large its gradient, an empty batch releases noise of std sigma * C, and a federated run
on the ghost engine charges the ledger exactly what the hooks run charges.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from torch import nn
from torch.nn import functional as F

from fedsynth.config.schema import ModelConfig, TrainConfig
from fedsynth.data.phantom import make_phantom
from fedsynth.errors import ConfigError
from fedsynth.hospital.hospital import paired_discriminator_loss
from fedsynth.models.autoencoder import MultimodalAutoencoder
from fedsynth.models.latent_gan import LatentDiscriminator
from fedsynth.privacy.dpsgd import DPNetwork
from fedsynth.privacy.ghost import GhostClipping
from fedsynth.privacy.randomness import ReproducibleRandomness, SecureRandomness
from fedsynth.simulation import simulate_in_process

B = 8  # records in a batch (the first B of the phantom); record B is the one that joins
MODEL = ModelConfig(image_channels=4, groups=2, gan_hidden=32, table_hidden=16)
SIGMA = 1.3


@dataclass
class Network:
    """A private network's constructor and its per-record losses (one entry per batch row)."""

    name: str
    build: Callable[[], nn.Module]
    per_row: Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _networks() -> list[Network]:
    data = make_phantom(B + 1, 2, 16, seed=3)
    images, clinical = torch.tensor(data.images), torch.tensor(data.clinical)
    labels = torch.tensor(data.labels)
    g = torch.Generator().manual_seed(0)
    image_noise = torch.randn(B + 1, MODEL.image_latent_dim, generator=g)
    table_noise = torch.randn(B + 1, MODEL.table_latent_dim, generator=g)
    d = MODEL.image_latent_dim + MODEL.table_latent_dim
    real, fake = torch.randn(B + 1, d, generator=g), torch.randn(B + 1, d, generator=g) * 2
    fake_labels = torch.randint(2, (B + 1,), generator=g)
    image_only = replace(data.schema, columns=())
    table_only = replace(data.schema, image_shape=None)

    def discriminator_rows(net: nn.Module, rows: torch.Tensor) -> torch.Tensor:
        """The hospital's paired loss, per row (real + fake latent of one record in one row)."""
        pairs = torch.stack([real[rows], fake[rows]], dim=1)
        score, logits = net(pairs, torch.stack([labels[rows], fake_labels[rows]], dim=1))
        target = torch.stack([torch.ones(len(rows)), torch.zeros(len(rows))], dim=1)
        bce = F.binary_cross_entropy_with_logits(score, target, reduction="none").sum(dim=1)
        return bce + F.cross_entropy(logits[:, 0], labels[rows], reduction="none")

    def hospital_loss(net: nn.Module, rows: torch.Tensor) -> torch.Tensor:
        return paired_discriminator_loss(net, real[rows], labels[rows], fake[rows], fake_labels[rows])[0]

    nets = [
        Network(
            "image autoencoder",
            lambda: MultimodalAutoencoder(image_only, MODEL),
            lambda net, rows: net(images[rows], None, labels[rows], image_noise[rows]),
        ),
        Network(
            "table autoencoder",
            lambda: MultimodalAutoencoder(table_only, MODEL),
            lambda net, rows: net(None, clinical[rows], labels[rows], table_noise[rows]),
        ),
        Network("discriminator", lambda: LatentDiscriminator(d, 2, MODEL.gan_hidden), discriminator_rows),
    ]
    # The per-row form used here sums to the loss the hospital steps on.
    disc = nets[2].build()
    rows = torch.arange(B)
    assert torch.allclose(discriminator_rows(disc, rows).sum(), hospital_loss(disc, rows))
    return nets


NETWORKS = _networks()
ALL = torch.arange(B)


def _pair(net: Network, clip: float, optimizer: str = "adam", lr: float = 1e-3) -> dict[str, DPNetwork]:
    """The network twice, with identical weights: on the hooks engine and on the ghost engine."""
    out = {}
    for engine in ("hooks", "ghost"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(11)
            module = net.build()
        out[engine] = DPNetwork(
            module,
            lr=lr,
            private=True,
            noise_multiplier=SIGMA,
            max_grad_norm=clip,
            expected_batch_size=B,
            optimizer=optimizer,
            engine=engine,
        )
    return out


def _adversarial(module: nn.Module, scale: float, seed: int) -> None:
    """Large random weights (a server may send any): per-sample gradients far above C."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def _flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def _hooks_norms(dp: DPNetwork, loss: torch.Tensor) -> torch.Tensor:
    """Per-sample gradient norms from Opacus' per-sample gradients (the reference)."""
    loss.backward()
    params = [p for p in dp.module.parameters() if p.requires_grad]
    norms = torch.stack([p.grad_sample.flatten(1).pow(2).sum(dim=1) for p in params]).sum(dim=0).sqrt()
    dp.zero_grad()
    return norms


@pytest.mark.parametrize("net", NETWORKS, ids=lambda n: n.name)
@pytest.mark.parametrize("setting", ["all-clipped", "half-clipped", "none-clipped"])
def test_ghost_clipped_sum_and_norms_equal_the_reference(net: Network, setting: str) -> None:
    probe = _pair(net, 1.0)["hooks"]
    reference = _hooks_norms(probe, net.per_row(probe.forward, ALL).sum())
    # C below every norm, at the median (half the records clipped), above every norm.
    clip = {
        "all-clipped": 0.5 * float(reference.min()),
        "half-clipped": float(reference.median()),
        "none-clipped": 2.0 * float(reference.max()),
    }[setting]
    nets = _pair(net, clip)
    sums = {e: dp.clipped_sum(net.per_row(dp.forward, ALL).sum()) for e, dp in nets.items()}
    scale = sums["hooks"].abs().max()
    assert scale > 0
    assert torch.allclose(sums["ghost"], sums["hooks"], rtol=1e-4, atol=1e-5 * float(scale))

    ghost = nets["ghost"]
    assert ghost.clipping is not None
    net.per_row(ghost.forward, ALL).sum().backward()
    _, ghost_norms = ghost.clipping.clipped_sums(clip)
    ghost.zero_grad()
    assert torch.allclose(ghost_norms, reference, rtol=1e-4)
    if setting == "half-clipped":  # the setting really mixes clipped and unclipped records
        assert (reference > clip * 1.0001).any() and (reference < clip * 0.9999).any()
    if setting == "none-clipped":  # nothing clipped: the plain gradient of the summed loss, computed by autograd
        module = ghost.module
        module.zero_grad(set_to_none=True)
        net.per_row(module, ALL).sum().backward()
        plain = torch.cat([p.grad.flatten() for p in module.parameters()])
        module.zero_grad(set_to_none=True)
        assert torch.allclose(sums["ghost"], plain, rtol=1e-4, atol=1e-5 * float(scale))


@pytest.mark.parametrize("net", NETWORKS, ids=lambda n: n.name)
def test_one_step_with_the_same_noise_gives_the_same_weights(net: Network) -> None:
    """Same weights, batch and noise stream: the same update, and it is exactly
    lr * (clipped sum + N(0, (sigma C)^2) from the mechanism's randomness) / normalizer."""
    clip, lr = 0.5, 0.1
    nets = _pair(net, clip, optimizer="sgd", lr=lr)
    before = _flat(nets["hooks"].module)
    assert torch.equal(before, _flat(nets["ghost"].module))
    clipped = nets["ghost"].clipped_sum(net.per_row(nets["ghost"].forward, ALL).sum())
    for dp in nets.values():
        dp.use_randomness(ReproducibleRandomness(5, 0).mechanism(2))
        dp.step(net.per_row(dp.forward, ALL).sum())
    after = {e: _flat(dp.module) for e, dp in nets.items()}
    assert torch.allclose(after["ghost"], after["hooks"], rtol=1e-5, atol=1e-6)
    noise = ReproducibleRandomness(5, 0).mechanism(2).gaussian(clipped, SIGMA * clip)
    expected = before - lr * (clipped + noise) / B
    assert torch.allclose(after["ghost"], expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(after["ghost"], before - lr * clipped / B, atol=1e-4)  # the noise is there


@pytest.mark.parametrize("net", NETWORKS, ids=lambda n: n.name)
def test_ghost_clips_every_record_to_C(net: Network) -> None:
    """A record whose loss is scaled up a millionfold contributes exactly C (clipped, not dropped);
    a record joining the batch moves the clipped sum by at most C, for adversarial weights."""
    clip = 0.7
    dp = _pair(net, clip)["ghost"]
    weights = torch.ones(B)
    weights[3] = 1e6
    others = torch.tensor([i for i in range(B) if i != 3])
    huge = dp.clipped_sum((net.per_row(dp.forward, ALL) * weights).sum())
    rest = dp.clipped_sum(net.per_row(dp.forward, others).sum())
    assert float((huge - rest).norm()) == pytest.approx(clip, rel=1e-3)
    unclipped = dp.module
    worst = 0.0
    for trial in range(3):
        _adversarial(unclipped, scale=0.3 + trial, seed=trial)
        with_record = dp.clipped_sum(net.per_row(dp.forward, torch.arange(B + 1)).sum())
        without = dp.clipped_sum(net.per_row(dp.forward, ALL).sum())
        worst = max(worst, float((with_record - without).norm()))
    assert 0.5 * clip < worst <= clip * (1 + 1e-4)


@pytest.mark.parametrize("net", NETWORKS, ids=lambda n: n.name)
def test_empty_batch_releases_the_ledgers_noise(net: Network) -> None:
    clip, lr = 0.8, 1.0
    dp = _pair(net, clip, optimizer="sgd", lr=lr)["ghost"]
    before = _flat(dp.module)
    dp.use_randomness(ReproducibleRandomness(9, 1).mechanism(0))
    dp.step(None)
    released = (before - _flat(dp.module)) * B / lr
    expected = ReproducibleRandomness(9, 1).mechanism(0).gaussian(released, SIGMA * clip)
    assert torch.allclose(released, expected, atol=1e-5)  # float32 weights: rounding of w - noise * lr / B
    dp.use_randomness(SecureRandomness().mechanism(0))
    before = _flat(dp.module)
    dp.step(None)
    noise = (before - _flat(dp.module)) * B / lr
    assert noise.std().item() == pytest.approx(SIGMA * clip, rel=0.15 if noise.numel() < 5000 else 0.05)
    assert abs(noise.mean().item()) < 0.1 * SIGMA * clip


def test_ghost_steps_only_while_recording_and_refuses_unknown_layers() -> None:
    net = NETWORKS[2]
    dp = _pair(net, 1.0)["ghost"]
    dp.use_randomness(SecureRandomness().mechanism(0))
    dp.hooks(False)  # the generator's pass through D: nothing is recorded, weights get plain grads
    net.per_row(dp.module, ALL).sum().backward()
    assert all(p.grad is not None for p in dp.module.parameters())
    dp.zero_grad()
    dp.hooks(True)
    with pytest.raises(RuntimeError, match="recorded no backward"):
        dp.clipped_sum(net.per_row(dp.module, ALL).sum())  # bypassed the recording wrapper
    dp.zero_grad()

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale

    with pytest.raises(ValueError, match="dp_engine = 'ghost' cannot clip.*Scaled"):
        GhostClipping(nn.Sequential(nn.Linear(3, 3), Scaled()))
    with pytest.raises(ValueError, match="dp_engine"):
        DPNetwork(
            nn.Linear(2, 2),
            lr=0.1,
            private=True,
            noise_multiplier=1,
            max_grad_norm=1,
            expected_batch_size=4,
            engine="fast",
        )
    with pytest.raises(ConfigError, match="train.dp_engine"):
        TrainConfig(dp_engine="fast")  # type: ignore[arg-type]


#: Shorter than the shared tiny run: two hospitals, one round per phase, few synthetic records.
SHORT = ["federation.num_hospitals=2", "train.rounds_gan=1", "evaluation.num_synthetic=20"]


def _history(run: Path) -> dict[str, list[dict]]:
    privacy = json.loads((run / "privacy.json").read_text())
    return {h: record["history"] for h, record in privacy["hospitals"].items()}


def test_a_federated_run_on_the_ghost_engine_charges_what_the_hooks_run_charges(tmp_path: Path) -> None:
    histories = {}
    for engine in ("hooks", "ghost"):
        cfg = tiny_config(tmp_path / engine, f'train.dp_engine="{engine}"', *SHORT)
        assert cfg.train.dp_engine == engine
        simulate_in_process(cfg)
        histories[engine] = _history(tmp_path / engine)
    keys = ("round", "steps", "sample_rate", "noise_multiplier", "max_grad_norm", "sensitivity")
    hooks, ghost = histories["hooks"], histories["ghost"]
    assert sorted(hooks) == sorted(ghost) and all(hooks.values())
    for h in hooks:
        assert [{k: e.get(k) for k in keys} for e in ghost[h]] == [{k: e.get(k) for k in keys} for e in hooks[h]]
        assert all(e.get("steps") for e in ghost[h])
