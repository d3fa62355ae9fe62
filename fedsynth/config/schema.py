"""The typed run configuration: one frozen dataclass per TOML section.

The dataclass defaults are the single source of truth for default values; ``pyproject.toml``'s
``[tool.flwr.app.config]`` mirrors them for ``flwr run .`` and a test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fedsynth.data.config import DataConfig
from fedsynth.errors import ConfigError


def _require(condition: bool, key: str, expected: str, value: object) -> None:
    if not condition:
        raise ConfigError(f"{key} = {value!r}: expected {expected}")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the three-stage generator (encoders/decoders, latent conditional GAN)."""

    image_latent_dim: int = 16
    table_latent_dim: int = 8
    image_channels: int = 16
    table_hidden: int = 64
    noise_dim: int = 32
    gan_hidden: int = 128
    groups: int = 4

    def __post_init__(self) -> None:
        for name in ("image_latent_dim", "table_latent_dim", "image_channels", "table_hidden", "noise_dim"):
            _require(getattr(self, name) > 0, f"model.{name}", "a positive integer", getattr(self, name))
        _require(self.gan_hidden > 0, "model.gan_hidden", "a positive integer", self.gan_hidden)
        _require(
            self.groups > 0 and self.image_channels % self.groups == 0,
            "model.groups",
            f"a positive divisor of model.image_channels ({self.image_channels})",
            self.groups,
        )


@dataclass(frozen=True)
class TrainConfig:
    """Rounds, local steps and optimizers of both training phases.

    Rounds run the ``autoencoder`` phase first (stage 1: encoders/decoders) and then the ``gan``
    phase (stage 2: latent conditional GAN on the frozen global encoders).
    """

    rounds_autoencoder: int = 4
    rounds_gan: int = 8
    local_steps_autoencoder: int = 25
    local_steps_gan: int = 40
    batch_size: int = 64
    lr_autoencoder: float = 2e-3
    lr_generator: float = 1e-3
    lr_discriminator: float = 1e-3
    generator_steps_per_round: int = 20

    def __post_init__(self) -> None:
        _require(self.rounds_autoencoder >= 0, "train.rounds_autoencoder", "an integer >= 0", self.rounds_autoencoder)
        _require(self.rounds_gan >= 0, "train.rounds_gan", "an integer >= 0", self.rounds_gan)
        _require(self.num_rounds > 0, "train.rounds_autoencoder + train.rounds_gan", "at least 1 round", 0)
        for name in ("local_steps_autoencoder", "local_steps_gan", "batch_size", "generator_steps_per_round"):
            _require(getattr(self, name) > 0, f"train.{name}", "a positive integer", getattr(self, name))
        for name in ("lr_autoencoder", "lr_generator", "lr_discriminator"):
            _require(getattr(self, name) > 0, f"train.{name}", "a positive learning rate", getattr(self, name))

    @property
    def num_rounds(self) -> int:
        return self.rounds_autoencoder + self.rounds_gan

    def phase_of_round(self, server_round: int) -> Literal["autoencoder", "gan"]:
        """Phase trained in ``server_round`` (1-based)."""
        return "autoencoder" if server_round <= self.rounds_autoencoder else "gan"


@dataclass(frozen=True)
class PrivacyConfig:
    """DP-SGD settings every hospital applies to the networks that touch real records.

    With ``noise_multiplier = 0`` the noise is derived from ``target_epsilon`` over the planned
    rounds (target-epsilon mode); with a positive ``noise_multiplier`` it is fixed. A hospital
    refuses to train past ``epsilon_budget`` (0 means: the target epsilon).
    """

    enabled: bool = True
    target_epsilon: float = 10.0
    noise_multiplier: float = 0.0
    epsilon_budget: float = 0.0
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    accountant: Literal["rdp", "prv"] = "rdp"

    def __post_init__(self) -> None:
        _require(self.target_epsilon > 0, "privacy.target_epsilon", "a positive epsilon", self.target_epsilon)
        _require(
            self.noise_multiplier >= 0,
            "privacy.noise_multiplier",
            "0 (derive) or a positive value",
            self.noise_multiplier,
        )
        _require(
            self.epsilon_budget >= 0,
            "privacy.epsilon_budget",
            "0 (= target) or a positive epsilon",
            self.epsilon_budget,
        )
        _require(self.max_grad_norm > 0, "privacy.max_grad_norm", "a positive clipping norm", self.max_grad_norm)
        _require(0 < self.delta < 1, "privacy.delta", "a value in (0, 1)", self.delta)
        _require(self.accountant in ("rdp", "prv"), "privacy.accountant", "'rdp' or 'prv'", self.accountant)

    @property
    def budget(self) -> float:
        """The epsilon past which a hospital refuses to train."""
        return self.epsilon_budget if self.epsilon_budget > 0 else self.target_epsilon


@dataclass(frozen=True)
class FederationConfig:
    """How many hospitals, which strategy plugin, and how long the server waits."""

    num_hospitals: int = 3
    strategy: str = "fedavg"
    min_hospitals: int = 1
    round_timeout: float = 600.0

    def __post_init__(self) -> None:
        _require(self.num_hospitals >= 1, "federation.num_hospitals", "at least 1 hospital", self.num_hospitals)
        _require(
            1 <= self.min_hospitals <= self.num_hospitals,
            "federation.min_hospitals",
            f"between 1 and federation.num_hospitals ({self.num_hospitals})",
            self.min_hospitals,
        )
        _require(self.round_timeout > 0, "federation.round_timeout", "a positive number of seconds", self.round_timeout)


@dataclass(frozen=True)
class SimulationConfig:
    """Flower simulation resources and the torch device of every hospital."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    device: str = "auto"

    def __post_init__(self) -> None:
        _require(self.num_cpus > 0, "simulation.num_cpus", "a positive number of CPUs per hospital", self.num_cpus)
        _require(self.num_gpus >= 0, "simulation.num_gpus", "a fraction of a GPU >= 0", self.num_gpus)
        _require(
            self.device in ("auto", "cpu") or self.device.startswith("cuda"),
            "simulation.device",
            "'auto', 'cpu' or 'cuda[:N]'",
            self.device,
        )


@dataclass(frozen=True)
class EvaluationConfig:
    """What the server does with the final generator."""

    num_synthetic: int = 1000

    def __post_init__(self) -> None:
        _require(self.num_synthetic >= 10, "evaluation.num_synthetic", "at least 10 samples", self.num_synthetic)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on; saved as ``config.toml`` in the run folder."""

    seed: int = 0
    #: The run folder the server writes (``fedsynth simulate --out`` sets it).
    out_dir: str = "runs/demo"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
