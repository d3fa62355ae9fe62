"""The typed run configuration: one frozen dataclass per TOML section.

The dataclass defaults are the single source of truth for default values; ``pyproject.toml``'s
``[tool.flwr.app.config]`` mirrors them for ``flwr run .`` and a test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fedsynth.data.config import DataConfig
from fedsynth.errors import ConfigError
from fedsynth.site.policy import SitePolicy


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
    #: Weight of the autoencoder's label head (0 = unsupervised latent space).
    label_weight: float = 1.0
    #: Weights of the image (pixel MSE) and table (per-column MSE/CE) reconstruction losses.
    image_loss_weight: float = 40.0
    table_loss_weight: float = 20.0
    #: Weight of the KL term that keeps latents close to N(0, I).
    kl_weight: float = 0.1
    #: The latent model: "gan" (DP-SGD autoencoder + latent conditional GAN) or "gaussian"
    #: (DP principal components of the images + a class-conditional Gaussian on the joint latent,
    #: from three Gaussian-mechanism releases; see fedsynth.models.gaussian).
    latent_model: Literal["gan", "gaussian"] = "gan"
    #: Gaussian model: image principal components kept (the class-centre directions included).
    basis_dim: int = 16
    #: Gaussian model: per-pixel RMS deviation from 0.5 at which an image is clipped in the
    #: class-mean release, and from its class centre in the later releases.
    mean_clip: float = 0.5
    image_clip: float = 0.125
    #: Gaussian model: share of the joint latent vector's norm given to the clinical table.
    table_share: float = 0.25

    def __post_init__(self) -> None:
        _require(
            self.latent_model in ("gan", "gaussian"), "model.latent_model", "'gan' or 'gaussian'", self.latent_model
        )
        _require(self.basis_dim > 0, "model.basis_dim", "a positive integer", self.basis_dim)
        _require(self.image_clip > 0, "model.image_clip", "a positive per-pixel deviation", self.image_clip)
        _require(0 < self.mean_clip <= 0.5, "model.mean_clip", "a per-pixel deviation in (0, 0.5]", self.mean_clip)
        _require(0 < self.table_share < 1, "model.table_share", "a share in (0, 1)", self.table_share)
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

    rounds_autoencoder: int = 6
    rounds_gan: int = 4
    local_steps_autoencoder: int = 100
    local_steps_gan: int = 50
    batch_size: int = 64
    lr_autoencoder: float = 2e-3
    lr_generator: float = 1e-3
    lr_discriminator: float = 1e-3
    generator_steps_per_round: int = 20
    #: Weight of the auxiliary-classifier term in the generator loss (AC-GAN). Large weights push
    #: generated records away from the class boundary (exaggerated class differences).
    generator_class_weight: float = 0.0
    #: Optimizer of the networks that see real records: "adam" (default) or plain "sgd".
    optimizer: Literal["adam", "sgd"] = "adam"
    #: How a step's batch is drawn: "poisson" (rate privacy.sample_rate; what the DP accounting
    #: assumes) or "fixed" (exactly batch_size records without replacement; non-private runs only).
    sampling: Literal["poisson", "fixed"] = "poisson"
    #: The rounds to run: "gan" (rounds_autoencoder autoencoder rounds, then rounds_gan GAN
    #: rounds) or "gaussian" (one round per release of the Gaussian latent model: image-mean,
    #: image-basis, latent-moments; model.latent_model must match).
    schedule: Literal["gan", "gaussian"] = "gan"
    #: Gaussian schedule: shares of the budget (squared sensitivity) of the image-mean and
    #: image-basis releases; the latent-moments release gets the rest. Table-only data: both 0.
    gaussian_mean_share: float = 0.05
    gaussian_basis_share: float = 0.8
    #: How a private step computes its per-sample clipped gradient sum: "hooks" (Opacus' per-sample
    #: gradients, the reference) or "ghost" (per-sample norms without per-sample gradients, one
    #: backward pass; see fedsynth.privacy.ghost). Both clip every record to max_grad_norm and add
    #: the same noise: the privacy ledger does not depend on the engine.
    dp_engine: Literal["hooks", "ghost"] = "ghost"

    def __post_init__(self) -> None:
        _require(self.optimizer in ("adam", "sgd"), "train.optimizer", "'adam' or 'sgd'", self.optimizer)
        _require(self.dp_engine in ("hooks", "ghost"), "train.dp_engine", "'hooks' or 'ghost'", self.dp_engine)
        _require(self.sampling in ("poisson", "fixed"), "train.sampling", "'poisson' or 'fixed'", self.sampling)
        _require(self.schedule in ("gan", "gaussian"), "train.schedule", "'gan' or 'gaussian'", self.schedule)
        for name in ("gaussian_mean_share", "gaussian_basis_share"):
            _require(0 <= getattr(self, name) < 1, f"train.{name}", "a share in [0, 1)", getattr(self, name))
        _require(
            self.gaussian_mean_share + self.gaussian_basis_share < 1,
            "train.gaussian_mean_share + train.gaussian_basis_share",
            "less than 1 (the latent-moments release gets the rest)",
            self.gaussian_mean_share + self.gaussian_basis_share,
        )
        _require(self.rounds_autoencoder >= 0, "train.rounds_autoencoder", "an integer >= 0", self.rounds_autoencoder)
        _require(self.rounds_gan >= 0, "train.rounds_gan", "an integer >= 0", self.rounds_gan)
        _require(self.num_rounds > 0, "train.rounds_autoencoder + train.rounds_gan", "at least 1 round", 0)
        for name in ("local_steps_autoencoder", "local_steps_gan", "batch_size", "generator_steps_per_round"):
            _require(getattr(self, name) > 0, f"train.{name}", "a positive integer", getattr(self, name))
        for name in ("lr_autoencoder", "lr_generator", "lr_discriminator"):
            _require(getattr(self, name) > 0, f"train.{name}", "a positive learning rate", getattr(self, name))

    @property
    def phases(self) -> list[str]:
        """The phase of every round, in order."""
        if self.schedule == "gaussian":
            shares = {"image-mean": self.gaussian_mean_share, "image-basis": self.gaussian_basis_share}
            return [p for p in ("image-mean", "image-basis") if shares[p] > 0] + ["latent-moments"]
        return ["autoencoder"] * self.rounds_autoencoder + ["gan"] * self.rounds_gan

    @property
    def num_rounds(self) -> int:
        return len(self.phases)

    def phase_of_round(self, server_round: int) -> str:
        """Phase trained in ``server_round`` (1-based)."""
        return self.phases[server_round - 1]


@dataclass(frozen=True)
class PrivacyConfig:
    """The DP-SGD settings the server *requests* for the networks that touch real records.

    Each hospital holds the request to its own site policy (``fedsynth.site.policy``): it runs the
    request when it is at least as strict, and refuses otherwise. With ``noise_multiplier = 0`` the
    noise is derived from ``target_epsilon`` over the planned rounds (target-epsilon mode); with a
    positive ``noise_multiplier`` it is fixed. A hospital refuses to train past ``epsilon_budget``
    in this run (0 means: the target epsilon). ``sample_rate`` is the Poisson sample rate; 0 lets a
    hospital whose record count is public use ``train.batch_size / records``.
    ``reproducible_noise`` derives DP noise and sampling from the seed: simulation studies only,
    refused by sites whose policy does not allow it, and never private against the seed's holder.
    """

    enabled: bool = True
    target_epsilon: float = 10.0
    noise_multiplier: float = 0.0
    epsilon_budget: float = 0.0
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    accountant: Literal["rdp", "prv"] = "rdp"
    sample_rate: float = 0.04
    reproducible_noise: bool = False

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
        _require(
            0 <= self.sample_rate <= 1,
            "privacy.sample_rate",
            "0 (batch_size / records, public record counts only) or a rate in (0, 1]",
            self.sample_rate,
        )

    @property
    def budget(self) -> float:
        """The epsilon past which a hospital refuses to train."""
        return self.epsilon_budget if self.epsilon_budget > 0 else self.target_epsilon


@dataclass(frozen=True)
class FederationConfig:
    """Topology (strategy plugin), aggregation rule, and how long the server waits.

    ``fedavg`` is a star: the server aggregates every round with ``aggregation`` (``mean`` is
    FedAvg weighted by examples; ``median``, ``trimmed_mean`` and ``krum`` are robust rules).
    ``ring`` passes models from hospital to hospital (relayed by the server); each hospital merges
    what it receives with its own model using ``aggregation``. With ``ring_sealed`` every relayed
    model is sealed end to end for the receiving neighbour (each site needs a ring key and pins its
    neighbours in its site file): the server relays ciphertext, and the final model comes from a
    plaintext release of each hospital's final model after the last round.
    """

    num_hospitals: int = 3
    strategy: str = "fedavg"
    aggregation: str = "mean"
    trim_fraction: float = 0.2
    krum_malicious: int = 1
    krum_multi: int = 1
    min_hospitals: int = 1
    round_timeout: float = 600.0
    #: Largest update (MB) the server accepts from one hospital.
    max_update_mb: float = 200.0
    #: Ring: "sequential" (one pass around the ring per round) or "synchronous" (all at once).
    ring_schedule: Literal["sequential", "synchronous"] = "sequential"
    #: Ring order as comma-separated hospital ids; empty means 0, 1, ..., N-1.
    ring_order: str = ""
    #: Which ring model the summary scores: "average" of all hospitals' final models, or "last".
    ring_final: Literal["average", "last"] = "average"
    #: Ring: seal every relayed model end to end between neighbouring hospitals (a request: sites
    #: need a ring key and pinned neighbours; see fedsynth.site.ring).
    ring_sealed: bool = False
    #: A deployment's node registry (written by ``fedsynth coordinator register``): the server
    #: knows each hospital by the key the coordinator registered, not by what a node claims.
    node_registry: str = ""
    #: Precision of model weights on the wire, both directions: "float32" sends them exactly;
    #: "float16" and "int8" (per-array absmax scale) round them in transit. Rounding a DP output
    #: is post-processing: the ledger charges the same, the run's summary declares the rounding.
    transfer_precision: Literal["float32", "float16", "int8"] = "float32"

    def __post_init__(self) -> None:
        _require(self.num_hospitals >= 1, "federation.num_hospitals", "at least 1 hospital", self.num_hospitals)
        _require(
            1 <= self.min_hospitals <= self.num_hospitals,
            "federation.min_hospitals",
            f"between 1 and federation.num_hospitals ({self.num_hospitals})",
            self.min_hospitals,
        )
        _require(self.round_timeout > 0, "federation.round_timeout", "a positive number of seconds", self.round_timeout)
        _require(self.max_update_mb > 0, "federation.max_update_mb", "a positive size in MB", self.max_update_mb)
        order = self.ring_hospitals()
        _require(
            sorted(order) == list(range(self.num_hospitals)),
            "federation.ring_order",
            f"a permutation of 0..{self.num_hospitals - 1}",
            self.ring_order,
        )
        _require(
            not self.ring_sealed or (self.strategy == "ring" and self.num_hospitals >= 2),
            "federation.ring_sealed",
            "false unless federation.strategy = 'ring' with at least 2 hospitals",
            self.ring_sealed,
        )

    def ring_hospitals(self) -> list[int]:
        """The ring order (hospital ids)."""
        if not self.ring_order.strip():
            return list(range(self.num_hospitals))
        try:
            return [int(x) for x in self.ring_order.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(
                f"federation.ring_order = {self.ring_order!r}: expected comma-separated hospital ids"
            ) from None

    def aggregation_params(self) -> dict:
        """Parameters of the configured aggregation rule."""
        if self.aggregation == "trimmed_mean":
            return {"trim_fraction": self.trim_fraction}
        if self.aggregation == "krum":
            return {"num_malicious": self.krum_malicious, "multi": self.krum_multi}
        return {}


@dataclass(frozen=True)
class FaultConfig:
    """Fault injection for simulation: comma-separated ``HOSPITAL@ROUND`` (or ``@FIRST-LAST``).

    ``drop``: the hospital leaves for good from that round on; ``late``: it answers after the
    round timeout; ``crash``: it crashes (losing its in-memory state) for those rounds and rejoins
    from its saved state afterwards; ``corrupt``: it sends NaN weights (the server must reject them).
    """

    drop: str = ""
    late: str = ""
    crash: str = ""
    corrupt: str = ""


@dataclass(frozen=True)
class NetworkConfig:
    """Network model for the simulated communication time of each round."""

    bandwidth_mbps: float = 100.0
    latency_ms: float = 20.0
    server_mbps: float = 1000.0
    #: Per-site overrides "HOSPITAL:UPLINK/DOWNLINK/LATENCY_MS", comma-separated.
    sites: str = ""

    def __post_init__(self) -> None:
        _require(self.bandwidth_mbps > 0, "network.bandwidth_mbps", "a positive bandwidth", self.bandwidth_mbps)
        _require(self.latency_ms >= 0, "network.latency_ms", "a latency >= 0", self.latency_ms)
        _require(self.server_mbps > 0, "network.server_mbps", "a positive bandwidth", self.server_mbps)


@dataclass(frozen=True)
class SimulationConfig:
    """Flower simulation resources and the torch device of every hospital.

    ``ray_address`` (``host:port`` of a running Ray head, or ``auto``) attaches Flower's engine to
    that existing Ray cluster instead of starting a private Ray instance; the cluster's own
    ``--num-cpus``/``--num-gpus`` then bound the run (docs/scaling.md).
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    device: str = "auto"
    ray_address: str = ""
    #: In-process engine: resident worker processes (0: one per GPU when hospitals train on GPU,
    #: else one per core; 1: every hospital in the server's process) and torch threads per worker
    #: (0: the cores shared out between the workers). See fedsynth.simulation.workers.
    workers: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        _require(
            self.ray_address in ("", "auto") or _is_host_port(self.ray_address),
            "simulation.ray_address",
            "'' (a private Ray instance), 'auto' or the 'host:port' of a running Ray head",
            self.ray_address,
        )
        _require(self.num_cpus > 0, "simulation.num_cpus", "a positive number of CPUs per hospital", self.num_cpus)
        _require(self.num_gpus >= 0, "simulation.num_gpus", "a fraction of a GPU >= 0", self.num_gpus)
        _require(
            self.device in ("auto", "cpu") or self.device.startswith("cuda"),
            "simulation.device",
            "'auto', 'cpu' or 'cuda[:N]'",
            self.device,
        )
        _require(self.workers >= 0, "simulation.workers", "0 (automatic) or a number of workers", self.workers)
        _require(self.threads >= 0, "simulation.threads", "0 (automatic) or a number of threads", self.threads)


def _is_host_port(address: str) -> bool:
    """``host:port`` with a non-empty host and a port in 1..65535 (what ``ray start --head`` prints)."""
    host, _, port = address.rpartition(":")
    return bool(host) and not any(c.isspace() for c in host) and port.isdigit() and 0 < int(port) < 65536


@dataclass(frozen=True)
class EvaluationConfig:
    """What the server does with the final generator, and what the simulation audits.

    ``centralized_baseline`` trains a second generator on the pooled records of all simulated
    hospitals under the same budget (for AMP); it is a second DP release on the same patients, so
    its mechanism history is composed into every hospital's reported epsilon.
    """

    num_synthetic: int = 1000
    centralized_baseline: bool = False

    def __post_init__(self) -> None:
        _require(self.num_synthetic >= 10, "evaluation.num_synthetic", "at least 10 samples", self.num_synthetic)


THREAT_MODELS = ("none", "honest", "code-shipping", "weights-only", "tamper")


@dataclass(frozen=True)
class AttackConfig:
    """The red team: a malicious server that tries to reconstruct records from hospital updates.

    ``threat_model``: ``none`` (an ordinary run), ``honest`` (the server sends the honest model and
    only tries to invert what comes back: the control), ``code-shipping`` (the server ships its own
    architecture with a linear imprint block in front of the image encoder and chooses the
    hyper-parameters), ``weights-only`` (honest code; the server writes imprint rows into layers
    the honest architecture has: the table encoder's first Linear, the latent discriminator's
    first Linear), ``tamper`` (an integrity attack on the ring: the server alters every model it
    relays, flipping a byte of a sealed one or negating a plaintext one; nothing is inverted).
    ``bins``: imprint rows (K). ``auxiliary``: a records file the server may hold
    (public or synthetic records, never the victims'); the bin thresholds are calibrated on it.
    ``rounds``: the rounds whose updates are inverted (comma-separated; empty: every round).
    ``batch_size``: the batch the server asks for (code-shipping; non-private sites draw exactly
    this many records, private sites a Poisson batch of this expected size). ``assumed_records``:
    the server's guess of a hospital's record count, used to turn the batch into a sample rate.
    ``scale``: factor on the rows planted before a smooth activation (the table encoder's SiLU),
    so it gates like a step; too large and the per-record update drowns in the float32 resolution
    of the huge planted weights.
    ``targets``: comma-separated subset of the threat model's layers to attack (``image``,
    ``table``, ``latent``); empty: all of them.
    """

    threat_model: Literal["none", "honest", "code-shipping", "weights-only", "tamper"] = "none"
    bins: int = 10
    auxiliary: str = ""
    rounds: str = ""
    batch_size: int = 1
    assumed_records: int = 0
    scale: float = 100.0
    measurement: Literal["random", "brightness"] = "random"
    targets: str = ""

    def __post_init__(self) -> None:
        _require(
            self.threat_model in THREAT_MODELS,
            "attack.threat_model",
            f"one of {list(THREAT_MODELS)}",
            self.threat_model,
        )
        _require(self.bins >= 2, "attack.bins", "at least 2 imprint rows", self.bins)
        _require(self.batch_size >= 1, "attack.batch_size", "a positive batch size", self.batch_size)
        _require(
            self.assumed_records >= 0, "attack.assumed_records", "0 (unknown) or a record count", self.assumed_records
        )
        _require(self.scale > 0, "attack.scale", "a positive factor", self.scale)
        _require(
            self.measurement in ("random", "brightness"),
            "attack.measurement",
            "'random' or 'brightness'",
            self.measurement,
        )

    def target_names(self) -> set[str] | None:
        """The layers to attack, or None for all of the threat model's."""
        names = {t.strip() for t in self.targets.split(",") if t.strip()}
        unknown = names - {"image", "table", "latent"}
        if unknown:
            raise ConfigError(f"attack.targets = {self.targets!r}: expected some of image, table, latent")
        return names or None

    def attacked_rounds(self) -> set[int] | None:
        """The rounds to invert, or None for every round."""
        if not self.rounds.strip():
            return None
        try:
            return {int(r) for r in self.rounds.split(",") if r.strip()}
        except ValueError:
            raise ConfigError(f"attack.rounds = {self.rounds!r}: expected comma-separated round numbers") from None


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
    faults: FaultConfig = field(default_factory=FaultConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    #: The privacy policy the simulation writes into every simulated hospital's site file (the
    #: server never reads it; real sites write their own).
    site_policy: SitePolicy = field(default_factory=SitePolicy)
    attack: AttackConfig = field(default_factory=AttackConfig)

    def __post_init__(self) -> None:
        if self.model.latent_model != self.train.schedule:
            raise ConfigError(
                f"model.latent_model = {self.model.latent_model!r} with train.schedule = {self.train.schedule!r}: "
                "expected the same value (the schedule runs the rounds the latent model learns from)"
            )
        if self.train.schedule == "gaussian" and self.federation.strategy != "fedavg":
            raise ConfigError(
                f"federation.strategy = {self.federation.strategy!r} with the Gaussian latent model: expected "
                "'fedavg' (its releases are sums the server adds up; a ring cannot relay them yet)"
            )
