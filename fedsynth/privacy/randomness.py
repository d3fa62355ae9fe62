"""The randomness that protects patients: Poisson sampling and DP noise.

DP-SGD's guarantee holds only against parties who cannot predict the noise or tell which records
were sampled. :class:`SecureRandomness` (the default) draws both from the operating system's
cryptographically secure generator (``os.urandom``) at the moment they are needed; nothing about
it is stored, derived from a seed or sent anywhere, so a redone round, a resumed run or a second
run of the same configuration never repeats it.

:class:`ReproducibleRandomness` derives every stream from (run seed, hospital id, index of the
mechanism run in the hospital's ledger). It exists for simulation studies that need bit-identical
reruns; it is opt-in, refused by any site whose policy does not allow it, and every output of such
a run says it is "not private against anyone who holds the seed". Because the ledger index grows
with every charged mechanism run, even this mode never reuses the noise of an earlier run.

Each mechanism run (one round of DP-SGD steps on one network) gets one
:class:`MechanismRandomness`: the sampling mask and the noise for the private steps, plus an
auxiliary ``torch.Generator`` for randomness inside the model (the variational autoencoder's
reparameterization noise, fake labels and generator inputs) which the DP analysis does not rely on.
"""

from __future__ import annotations

import math
import os
import secrets
from abc import ABC, abstractmethod

import numpy as np
import torch

#: Uniforms carry 53 random bits (a float64 mantissa): Gaussian tails are exact to ~8.5 sigma.
_UNIFORM_BITS = 53


def _secure_uniform(n: int) -> torch.Tensor:
    """``n`` float64 uniforms in (0, 1] from the OS's secure generator."""
    words = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) >> np.uint64(64 - _UNIFORM_BITS)
    # +1 keeps the value away from 0, so log(u) below is finite.
    return (torch.from_numpy(words.astype(np.float64)) + 1.0) * 2.0**-_UNIFORM_BITS


def _secure_normal(n: int) -> torch.Tensor:
    """``n`` standard normal float64 values (Box-Muller on secure uniforms)."""
    half = (n + 1) // 2
    u = _secure_uniform(2 * half)
    radius = torch.sqrt(-2.0 * torch.log(u[:half]))
    angle = 2.0 * math.pi * u[half:]
    return torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)])[:n]


class MechanismRandomness(ABC):
    """Randomness of one mechanism run: sampling, noise, and model-internal draws."""

    #: Model-internal randomness (not relied on by the DP analysis).
    aux: torch.Generator

    @abstractmethod
    def poisson_indices(self, n: int, sample_rate: float) -> torch.Tensor:
        """Indices of a Poisson-sampled batch: each of ``n`` records is taken with prob. ``sample_rate``."""

    @abstractmethod
    def gaussian(self, reference: torch.Tensor, std: float) -> torch.Tensor:
        """Gaussian noise of standard deviation ``std`` with the shape, dtype and device of ``reference``."""


class _SecureMechanism(MechanismRandomness):
    def __init__(self) -> None:
        self.aux = torch.Generator().manual_seed(secrets.randbits(63))

    def poisson_indices(self, n: int, sample_rate: float) -> torch.Tensor:
        mask = _secure_uniform(n) <= sample_rate
        return torch.nonzero(mask, as_tuple=False).flatten()

    def gaussian(self, reference: torch.Tensor, std: float) -> torch.Tensor:
        noise = _secure_normal(reference.numel()).reshape(reference.shape) * std
        return noise.to(device=reference.device, dtype=reference.dtype)


class _SeededMechanism(MechanismRandomness):
    def __init__(self, seeds: list[int]) -> None:
        sample, noise, aux = seeds
        self.sample = torch.Generator().manual_seed(sample)
        self.noise = torch.Generator().manual_seed(noise)
        self.aux = torch.Generator().manual_seed(aux)

    def poisson_indices(self, n: int, sample_rate: float) -> torch.Tensor:
        mask = torch.rand(n, generator=self.sample, dtype=torch.float64) < sample_rate
        return torch.nonzero(mask, as_tuple=False).flatten()

    def gaussian(self, reference: torch.Tensor, std: float) -> torch.Tensor:
        noise = torch.normal(0.0, std, reference.shape, generator=self.noise, dtype=torch.float64)
        return noise.to(device=reference.device, dtype=reference.dtype)


class Randomness(ABC):
    """Where a hospital's protective randomness comes from."""

    #: True when anyone holding the seed can regenerate the noise.
    reproducible: bool
    description: str

    @abstractmethod
    def mechanism(self, index: int) -> MechanismRandomness:
        """Fresh randomness for the ``index``-th mechanism run of the hospital's ledger."""


class SecureRandomness(Randomness):
    """OS entropy for every draw; the index is ignored (nothing can repeat)."""

    reproducible = False
    description = "operating-system CSPRNG (os.urandom), drawn fresh for every step; never seeded or stored"

    def mechanism(self, index: int) -> MechanismRandomness:
        return _SecureMechanism()


class ReproducibleRandomness(Randomness):
    """Streams derived from (seed, hospital id, ledger index): simulation studies only."""

    reproducible = True

    def __init__(self, seed: int, hospital_id: int) -> None:
        self.seed = int(seed)
        self.hospital_id = int(hospital_id)
        self.description = (
            f"REPRODUCIBLE: derived from run seed {self.seed}, hospital {self.hospital_id} and the ledger "
            "index; not private against anyone who holds the seed"
        )

    def mechanism(self, index: int) -> MechanismRandomness:
        words = np.random.SeedSequence([self.seed, self.hospital_id, int(index)]).generate_state(3, dtype=np.uint64)
        return _SeededMechanism([int(w >> np.uint64(1)) for w in words])
