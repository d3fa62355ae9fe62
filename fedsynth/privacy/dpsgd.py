"""DP-SGD for one network, built once and kept across rounds.

Poisson sampling is done by the caller (with a :class:`~fedsynth.privacy.randomness.MechanismRandomness`)
on data that stays on the device; this module wraps the network in Opacus' ``GradSampleModule``
(per-sample gradients) and its optimizer in a ``DPOptimizer`` (per-sample clipping, Gaussian noise,
averaging by a fixed, public normalizer). The Gaussian noise comes from the mechanism's own
randomness (OS entropy by default), never from a generator anyone else could seed: the caller
sets it with :meth:`DPNetwork.use_randomness` before the steps of each mechanism run.

The loss handed to :meth:`DPNetwork.step` is the *sum* of per-sample losses, so per-sample
gradients are exact even when the network runs several forward passes per step. A "sample" is a
row of the batch dimension: whatever the caller puts in one row (e.g. a record's real latent and
its paired fake latent) is clipped as one contribution.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from opacus.validators import ModuleValidator
from torch import nn

from fedsynth.privacy.randomness import MechanismRandomness


class _MechanismNoiseOptimizer(DPOptimizer):
    """Opacus' DPOptimizer with the Gaussian noise drawn from the current mechanism's randomness."""

    randomness: MechanismRandomness | None = None

    def add_noise(self) -> None:
        if self.randomness is None:
            raise RuntimeError("DP step without randomness: call DPNetwork.use_randomness first")
        std = self.noise_multiplier * self.max_grad_norm
        for p in self.params:
            p.grad = (p.summed_grad + self.randomness.gaussian(p.summed_grad, std)).view_as(p)
            p.summed_grad = None  # consumed: a second add_noise without new gradients fails loudly


def backward(loss: torch.Tensor) -> None:
    """``loss.backward()`` without PyTorch's warning that Opacus' full backward hooks fire on
    modules whose inputs need no gradient (always the case here: data never requires grad)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
        loss.backward()


class DPNetwork:
    """A network with its optimizer, trained privately (DP-SGD) or plainly (non-private baseline).

    ``forward`` is the module to call in training steps (it records per-sample gradients when
    private); ``module`` is the plain network, for inference and weight exchange.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        lr: float,
        private: bool,
        noise_multiplier: float,
        max_grad_norm: float,
        expected_batch_size: float,
        betas: tuple[float, float] = (0.5, 0.999),
        optimizer: str = "adam",
    ) -> None:
        self.module = module
        self.private = private
        base: torch.optim.Optimizer
        if optimizer == "adam":
            base = torch.optim.Adam(module.parameters(), lr=lr, betas=betas)
        elif optimizer == "sgd":
            base = torch.optim.SGD(module.parameters(), lr=lr)
        else:
            raise ValueError(f"unknown optimizer {optimizer!r} (expected 'adam' or 'sgd')")
        self.base_optimizer = base
        if private:
            errors = ModuleValidator.validate(module, strict=False)
            if errors:
                raise ValueError(f"network is not compatible with DP-SGD: {errors}")
            self.forward: nn.Module = GradSampleModule(module, batch_first=True, loss_reduction="sum")
            self.optimizer: torch.optim.Optimizer = _MechanismNoiseOptimizer(
                base,
                noise_multiplier=noise_multiplier,
                max_grad_norm=max_grad_norm,
                expected_batch_size=max(1, round(expected_batch_size)),
                loss_reduction="mean",
            )
        else:
            self.forward = module
            self.optimizer = base

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.module.parameters()

    def use_randomness(self, randomness: MechanismRandomness) -> None:
        """The randomness the noise of the next steps is drawn from (one mechanism run)."""
        if isinstance(self.optimizer, _MechanismNoiseOptimizer):
            self.optimizer.randomness = randomness

    def clipped_sum(self, summed_loss: torch.Tensor) -> torch.Tensor:
        """The sum of the per-sample clipped gradients of ``summed_loss`` as one flat vector, before
        noise: what one record can change in a step is measured on this (tests, audits)."""
        if not isinstance(self.optimizer, DPOptimizer):
            raise RuntimeError("clipped_sum needs a private network")
        backward(summed_loss)
        self.optimizer.clip_and_accumulate()
        total = torch.cat([p.summed_grad.flatten() for p in self.optimizer.params])
        self.zero_grad()
        return total

    def step(self, summed_loss: torch.Tensor | None) -> None:
        """Backpropagate the summed per-sample loss and take one (DP) optimizer step.

        ``None`` stands for an empty Poisson batch: a private step still releases pure noise (the
        mechanism ran), a non-private step does nothing.
        """
        if summed_loss is None:
            if not self.private:
                return
            for p in self.module.parameters():
                if p.requires_grad:
                    p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
        else:
            backward(summed_loss)
        self.optimizer.step()
        self.zero_grad()

    def zero_grad(self) -> None:
        """Drop gradients and per-sample gradients (also after a generator step through D)."""
        self.optimizer.zero_grad(set_to_none=True)
        for p in self.module.parameters():
            p.grad = None
            if hasattr(p, "grad_sample"):
                p.grad_sample = None

    def hooks(self, enabled: bool) -> None:
        """Turn per-sample gradient capture on/off (off while the generator backpropagates through D)."""
        if isinstance(self.forward, GradSampleModule):
            if enabled:
                self.forward.enable_hooks()
            else:
                self.forward.disable_hooks()
