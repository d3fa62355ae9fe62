"""A hospital's privacy policy: the limits it holds every server request to.

The policy lives in the hospital's own site file. A server's request (``[privacy]`` of the run
configuration, carried in every instruction) is a proposal: the hospital runs it only when it is at
least as strict as the policy, takes the policy's value where the policy fixes one (clipping norm),
and otherwise refuses with a reason the server logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fedsynth.errors import ConfigError

#: The generator family fedsynth's own code builds (see fedsynth.models.generator).
BUILTIN_ARCHITECTURE = "fedsynth-multimodal-v1"


def _require(condition: bool, key: str, expected: str, value: object) -> None:
    if not condition:
        raise ConfigError(f"{key} = {value!r}: expected {expected}")


@dataclass(frozen=True)
class SitePolicy:
    """What a hospital allows to be done with its patients' records.

    ``record_count``: ``private`` keeps the number of records inside the site (add/remove
    neighbours; the server must request an explicit sample rate and updates are averaged without
    size weights) or ``public`` declares it a public fact (it is sent with every reply; replace-one
    neighbours, accounted at doubled sensitivity).

    ``approved_code``, ``min_batch_size`` and ``check_weights`` guard against a server that tries
    to reconstruct records from updates (imprint and trap-weight attacks): the site runs only code
    it approved, never trains on tiny batches, and inspects the weights it is sent. The optimizer
    is deliberately not restricted: plain SGD and Adam both release a function of the batch
    gradient, so what protects a record is the batch size, the DP noise and honest weights.
    """

    #: Refuse every request that trains without DP noise.
    require_dp: bool = True
    #: Largest delta the site accepts.
    max_delta: float = 1e-5
    #: Epsilon the site will ever spend on its records, over every run (0 = no lifetime cap).
    lifetime_epsilon_budget: float = 10.0
    #: Smallest noise multiplier the site accepts in a fixed-noise request.
    min_noise_multiplier: float = 0.0
    #: Largest Poisson sample rate the site accepts.
    max_sample_rate: float = 1.0
    #: The clipping norm the site uses (0 = the server's request).
    max_grad_norm: float = 0.0
    #: Whether a simulation study may derive the DP noise from a seed (never for real patients).
    allow_reproducible_noise: bool = False
    #: Model architectures the site will train.
    architectures: tuple[str, ...] = (BUILTIN_ARCHITECTURE,)
    record_count: Literal["private", "public"] = "private"
    #: Fingerprints (fedsynth.site.code) of the application code the site approved; empty: only
    #: the code installed at the site. A job whose code fingerprint is not approved is refused.
    approved_code: tuple[str, ...] = ()
    #: Smallest expected batch the site trains on (sample rate x record count for Poisson
    #: batches, ``train.batch_size`` for fixed ones). A gradient of a batch of one is the record;
    #: imprint attacks ("Robbing the Fed") need batches small enough to separate records.
    min_batch_size: float = 8.0
    #: Inspect the weights the server sends for crafted imprint and trap rows before training
    #: (see fedsynth.hospital.detectors).
    check_weights: bool = True

    def __post_init__(self) -> None:
        _require(0 < self.max_delta < 1, "site_policy.max_delta", "a value in (0, 1)", self.max_delta)
        _require(
            self.lifetime_epsilon_budget >= 0,
            "site_policy.lifetime_epsilon_budget",
            "0 (no cap) or a positive epsilon",
            self.lifetime_epsilon_budget,
        )
        _require(
            self.min_noise_multiplier >= 0,
            "site_policy.min_noise_multiplier",
            "a value >= 0",
            self.min_noise_multiplier,
        )
        _require(
            0 < self.max_sample_rate <= 1, "site_policy.max_sample_rate", "a value in (0, 1]", self.max_sample_rate
        )
        _require(self.max_grad_norm >= 0, "site_policy.max_grad_norm", "0 or a positive norm", self.max_grad_norm)
        _require(
            self.record_count in ("private", "public"),
            "site_policy.record_count",
            "'private' or 'public'",
            self.record_count,
        )
        _require(
            len(self.architectures) > 0, "site_policy.architectures", "at least one architecture", self.architectures
        )
        _require(
            all(len(d) == 64 and all(c in "0123456789abcdef" for c in d) for d in self.approved_code),
            "site_policy.approved_code",
            "SHA-256 code fingerprints (64 lowercase hex digits, see `fedsynth.site.code`)",
            self.approved_code,
        )
        _require(self.min_batch_size >= 1, "site_policy.min_batch_size", "a batch size >= 1", self.min_batch_size)

    @property
    def lifetime_budget(self) -> float | None:
        return self.lifetime_epsilon_budget if self.lifetime_epsilon_budget > 0 else None

    def to_dict(self) -> dict:
        return {
            "require_dp": self.require_dp,
            "max_delta": self.max_delta,
            "lifetime_epsilon_budget": self.lifetime_epsilon_budget,
            "min_noise_multiplier": self.min_noise_multiplier,
            "max_sample_rate": self.max_sample_rate,
            "max_grad_norm": self.max_grad_norm,
            "allow_reproducible_noise": self.allow_reproducible_noise,
            "architectures": list(self.architectures),
            "record_count": self.record_count,
            "approved_code": list(self.approved_code),
            "min_batch_size": self.min_batch_size,
            "check_weights": self.check_weights,
        }
