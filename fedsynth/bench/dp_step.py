"""One DP-SGD step of each private network: fedsynth's step against a plain step and stock Opacus.

The private networks are the ones that touch records: the autoencoder (measured twice, over an
image-only and over a table-only schema of the phantom, so each modality's cost shows) and the
latent discriminator (one (2, d) row per record: the real latent and its paired fake one). For each
network, on the same batch and from the same initial weights:

- ``fedsynth``: :class:`~fedsynth.privacy.dpsgd.DPNetwork` as a hospital builds it with
  ``train.dp_engine = "hooks"`` (Opacus' ``GradSampleModule`` with per-sample hooks, a
  ``DPOptimizer`` whose Gaussian noise comes from the operating system's entropy), one step =
  forward, summed loss, backward, clip, noise, Adam;
- ``ghost``: the same with ``train.dp_engine = "ghost"`` (per-sample norms without per-sample
  gradients, clipped sum by book-keeping; :mod:`fedsynth.privacy.ghost`), same noise and Adam;
- ``plain``: the same network and optimizer without privacy (``DPNetwork(private=False)``);
- ``opacus``: stock Opacus, ``PrivacyEngine().make_private`` with its defaults (hooks, torch's
  generator for the noise) and the same Adam settings.

Ratios: DP/plain (what privacy costs) and fedsynth/Opacus (what fedsynth adds to stock Opacus), for
each of fedsynth's two engines.
Noise multiplier and clipping norm do not change the work of a step; they are fixed here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedsynth.bench.measure import StepCost, measure_steps, ratio
from fedsynth.config.schema import ModelConfig, TrainConfig
from fedsynth.data.phantom import make_phantom
from fedsynth.hospital.hospital import paired_discriminator_loss
from fedsynth.models.autoencoder import MultimodalAutoencoder
from fedsynth.models.latent_gan import LatentDiscriminator
from fedsynth.privacy.dpsgd import DPNetwork
from fedsynth.privacy.randomness import SecureRandomness

#: Noise multiplier and clipping norm of the measured steps (they do not change a step's work).
NOISE_MULTIPLIER = 1.0
MAX_GRAD_NORM = 1.0

#: Network names, in table order.
NETWORKS = ("image autoencoder", "table autoencoder", "discriminator")


@dataclass(frozen=True)
class DPStepSize:
    """Batch, image side and how many steps to warm up and to time."""

    batch_size: int = 64
    image_size: int = 32
    warmup: int = 3
    repeats: int = 10

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.image_size < 8 or self.warmup < 0 or self.repeats < 1:
            raise ValueError(
                f"DP-step sizes: need batch >= 1, image side >= 8, warm-up >= 0 and repeats >= 1, got {self}"
            )


#: A minute or so on a 2-core CPU for all three networks and variants.
CPU_SIZE = DPStepSize()
#: A GPU: larger batches and images, more timed steps.
CUDA_SIZE = DPStepSize(batch_size=256, image_size=64, warmup=5, repeats=30)


@dataclass(frozen=True)
class DPStepRow:
    """One network's four step costs and their ratios."""

    network: str
    parameters: int
    batch_size: int
    fedsynth: StepCost
    plain: StepCost
    opacus: StepCost
    ghost: StepCost

    @property
    def dp_over_plain_time(self) -> float:
        return ratio(self.fedsynth.seconds, self.plain.seconds)

    @property
    def dp_over_plain_memory(self) -> float:
        return ratio(self.fedsynth.peak_bytes, self.plain.peak_bytes)

    @property
    def fedsynth_over_opacus_time(self) -> float:
        return ratio(self.fedsynth.seconds, self.opacus.seconds)

    @property
    def fedsynth_over_opacus_memory(self) -> float:
        return ratio(self.fedsynth.peak_bytes, self.opacus.peak_bytes)

    @property
    def ghost_over_plain_time(self) -> float:
        return ratio(self.ghost.seconds, self.plain.seconds)

    @property
    def ghost_over_plain_memory(self) -> float:
        return ratio(self.ghost.peak_bytes, self.plain.peak_bytes)

    @property
    def ghost_over_opacus_time(self) -> float:
        return ratio(self.ghost.seconds, self.opacus.seconds)

    @property
    def ghost_over_opacus_memory(self) -> float:
        return ratio(self.ghost.peak_bytes, self.opacus.peak_bytes)


@dataclass(frozen=True)
class Workload:
    """A private network and its step's summed per-sample loss on a fixed batch.

    ``build`` returns the network with fixed initial weights; ``loss`` computes the summed loss by
    calling the module it is given (the plain network, or Opacus' wrapper of it)."""

    name: str
    build: Callable[[], nn.Module]
    loss: Callable[[nn.Module], torch.Tensor]
    lr: float
    betas: tuple[float, float]


def workloads(size: DPStepSize, device: torch.device, model: ModelConfig, train: TrainConfig) -> list[Workload]:
    """The three private networks on a phantom batch of ``size.batch_size`` records."""
    data = make_phantom(size.batch_size, 2, size.image_size, seed=0)
    images = torch.tensor(data.images, device=device)
    clinical = torch.tensor(data.clinical, device=device)
    labels = torch.tensor(data.labels, device=device)
    image_only = replace(data.schema, columns=())
    table_only = replace(data.schema, image_shape=None)
    generator = torch.Generator().manual_seed(0)

    def seeded(make: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                return make().to(device)

        return build

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device)

    image_noise = normal(size.batch_size, model.image_latent_dim)
    table_noise = normal(size.batch_size, model.table_latent_dim)
    latent_dim = model.image_latent_dim + model.table_latent_dim
    real, fake = normal(size.batch_size, latent_dim), normal(size.batch_size, latent_dim)
    fake_labels = torch.randint(data.schema.num_classes, (size.batch_size,), generator=generator).to(device)
    autoencoder_betas = (0.9, 0.999)  # as the hospital builds it
    return [
        Workload(
            "image autoencoder",
            seeded(lambda: MultimodalAutoencoder(image_only, model)),
            lambda net: net(images, None, labels, image_noise).sum(),
            train.lr_autoencoder,
            autoencoder_betas,
        ),
        Workload(
            "table autoencoder",
            seeded(lambda: MultimodalAutoencoder(table_only, model)),
            lambda net: net(None, clinical, labels, table_noise).sum(),
            train.lr_autoencoder,
            autoencoder_betas,
        ),
        Workload(
            "discriminator",
            seeded(lambda: LatentDiscriminator(latent_dim, data.schema.num_classes, model.gan_hidden)),
            lambda net: paired_discriminator_loss(net, real, labels, fake, fake_labels)[0],
            train.lr_discriminator,
            (0.5, 0.999),
        ),
    ]


def fedsynth_step(work: Workload, size: DPStepSize, private: bool, engine: str = "hooks") -> Callable[[], None]:
    """fedsynth's step (``private``: as a hospital trains, with DP engine ``engine``) or the same
    network's plain step."""
    net = DPNetwork(
        work.build(),
        lr=work.lr,
        betas=work.betas,
        private=private,
        noise_multiplier=NOISE_MULTIPLIER,
        max_grad_norm=MAX_GRAD_NORM,
        expected_batch_size=size.batch_size,
        engine=engine,
    )
    net.use_randomness(SecureRandomness().mechanism(0))
    return lambda: net.step(work.loss(net.forward))


def opacus_step(work: Workload, size: DPStepSize) -> Callable[[], None]:
    """Stock Opacus: ``PrivacyEngine().make_private`` with default hooks, the same Adam settings."""
    module = work.build()
    optimizer = torch.optim.Adam(module.parameters(), lr=work.lr, betas=work.betas)
    loader = DataLoader(TensorDataset(torch.zeros(size.batch_size)), batch_size=size.batch_size)
    private, dp_optimizer, _ = PrivacyEngine().make_private(
        module=module,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=NOISE_MULTIPLIER,
        max_grad_norm=MAX_GRAD_NORM,
        loss_reduction="sum",  # the workloads' losses are sums of per-sample losses
    )

    def step() -> None:
        work.loss(private).backward()
        dp_optimizer.step()
        # Cleared after the step, as fedsynth's step does: per-sample gradients kept until the next
        # step would count in the memory held before a step instead of in the step's peak.
        dp_optimizer.zero_grad(set_to_none=True)

    return step


def bench_dp_steps(
    size: DPStepSize,
    device: torch.device | str = "cpu",
    model: ModelConfig | None = None,
    train: TrainConfig | None = None,
) -> list[DPStepRow]:
    """One row per private network (see the module docstring); default model and training settings."""
    device = torch.device(device)
    model, train = model or ModelConfig(), train or TrainConfig()
    rows = []
    with warnings.catch_warnings():
        # Opacus warns that full backward hooks fire on inputs without gradients (always so here)
        # and that its default noise generator is not cryptographically secure (the baseline's choice).
        warnings.simplefilter("ignore", UserWarning)
        for work in workloads(size, device, model, train):
            steps = {
                "fedsynth": fedsynth_step(work, size, private=True),
                "plain": fedsynth_step(work, size, private=False),
                "opacus": opacus_step(work, size),
                "ghost": fedsynth_step(work, size, private=True, engine="ghost"),
            }
            cost = measure_steps(steps, device, size.warmup, size.repeats)
            parameters = sum(p.numel() for p in work.build().parameters())
            rows.append(
                DPStepRow(
                    work.name,
                    parameters,
                    size.batch_size,
                    cost["fedsynth"],
                    cost["plain"],
                    cost["opacus"],
                    cost["ghost"],
                )
            )
    return rows
