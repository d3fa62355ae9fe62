"""DP-SGD for one network, built once and kept across rounds.

Poisson sampling is done by the caller (with a :class:`~fedsynth.privacy.randomness.MechanismRandomness`)
on data that stays on the device; this module wraps the network in Opacus' ``GradSampleModule``
(per-sample gradients) and its optimizer in a ``DPOptimizer`` (per-sample clipping, Gaussian noise,
averaging by a fixed, public normalizer). With ``engine="ghost"`` (``train.dp_engine``) the
clipped sum comes instead from :mod:`fedsynth.privacy.ghost` (per-sample norms without per-sample
gradients, one backward pass); the clip factor formula, the noise, its source and the normalizer
are the same for both engines. The Gaussian noise comes from the mechanism's own randomness (OS
entropy by default), never from a generator anyone else could seed: the caller sets it with
:meth:`DPNetwork.use_randomness` before the steps of each mechanism run.

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

from fedsynth.privacy.ghost import GhostClipping, GhostModule
from fedsynth.privacy.randomness import MechanismRandomness

#: The DP-SGD engines a run can choose (``train.dp_engine``): Opacus' per-sample gradient hooks
#: (the reference) or ghost norms with book-keeping (:mod:`fedsynth.privacy.ghost`).
DP_ENGINES = ("hooks", "ghost")


class _MechanismNoiseOptimizer(DPOptimizer):
    """Opacus' DPOptimizer with the Gaussian noise drawn from the current mechanism's randomness."""

    randomness: MechanismRandomness | None = None

    def add_noise(self) -> None:
        if self.randomness is None:
            raise RuntimeError("DP step without randomness: call DPNetwork.use_randomness first")
        std = self.noise_multiplier * self.max_grad_norm
        # One draw for all parameters (i.i.d. N(0, std^2) per coordinate, as per-parameter draws
        # would be; one call to the secure source instead of one per parameter tensor).
        summed = [p.summed_grad for p in self.params]
        if any(s is None for s in summed):
            raise RuntimeError("DP step without a clipped sum: backpropagate a loss first")
        flat = torch.cat([s.flatten() for s in summed])
        noisy = flat + self.randomness.gaussian(flat, std)
        for p, grad in zip(self.params, torch.split(noisy, [s.numel() for s in summed]), strict=True):
            p.grad = grad.view_as(p)
            p.summed_grad = None  # consumed: a second add_noise without new gradients fails loudly


class _GhostNoiseOptimizer(_MechanismNoiseOptimizer):
    """The same noise and normalizer, with the clipped sum from :class:`GhostClipping` instead of
    per-sample gradients (``p.grad_sample`` is never set on this path)."""

    clipping: GhostClipping
    #: Set by an empty Poisson batch: the next clipped sum is zero (the step releases pure noise).
    empty: bool = False

    def clip_and_accumulate(self) -> None:
        if self.empty:
            sums = self.clipping.empty_sums()
            self.empty = False
        else:
            sums = self.clipping.clipped_sums(self.max_grad_norm)[0]
        for p, total in zip(self.clipping.params, sums, strict=True):
            p.summed_grad = total if p.summed_grad is None else p.summed_grad + total

    def scale_grad(self) -> None:
        if self.loss_reduction == "mean":  # one batch per step: no accumulated iterations
            for p in self.params:
                p.grad /= self.expected_batch_size

    def pre_step(self, closure: object = None) -> bool:
        self.clip_and_accumulate()
        self.add_noise()
        self.scale_grad()
        return True


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
        engine: str = "hooks",
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
        if engine not in DP_ENGINES:
            raise ValueError(f"train.dp_engine = {engine!r}: expected one of {list(DP_ENGINES)}")
        self.engine = engine
        self.clipping: GhostClipping | None = None
        if private:
            errors = ModuleValidator.validate(module, strict=False)
            if errors:
                raise ValueError(f"network is not compatible with DP-SGD: {errors}")
            noise_optimizer = _MechanismNoiseOptimizer
            if engine == "ghost":
                self.clipping = GhostClipping(module)
                self.forward: nn.Module = GhostModule(module, self.clipping)
                noise_optimizer = _GhostNoiseOptimizer
            else:
                self.forward = GradSampleModule(module, batch_first=True, loss_reduction="sum")
            self.optimizer: torch.optim.Optimizer = noise_optimizer(
                base,
                noise_multiplier=noise_multiplier,
                max_grad_norm=max_grad_norm,
                expected_batch_size=max(1, round(expected_batch_size)),
                loss_reduction="mean",
            )
            if isinstance(self.optimizer, _GhostNoiseOptimizer):
                assert self.clipping is not None
                if [id(p) for p in self.optimizer.params] != [id(p) for p in self.clipping.params]:
                    raise ValueError("the optimizer must hold exactly the network's trainable parameters")
                self.optimizer.clipping = self.clipping
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
            if isinstance(self.optimizer, _GhostNoiseOptimizer):
                self.optimizer.empty = True
            else:
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
        if self.clipping is not None:
            self.clipping.clear()

    def hooks(self, enabled: bool) -> None:
        """Turn per-sample gradient capture on/off (off while the generator backpropagates through D)."""
        if self.clipping is not None:
            self.clipping.enabled = enabled
        elif isinstance(self.forward, GradSampleModule):
            if enabled:
                self.forward.enable_hooks()
            else:
                self.forward.disable_hooks()
