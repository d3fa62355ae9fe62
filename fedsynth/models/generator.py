"""The three-stage conditional multimodal generator as one object.

Stage 1 (:class:`MultimodalAutoencoder`) encodes each modality into a joint latent vector, stage 2
(:class:`LatentGenerator` / :class:`LatentDiscriminator`) learns label-conditioned latents, and
stage 3 decodes generated latents back to image + clinical row; the label is the condition.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from fedsynth.config.schema import ModelConfig
from fedsynth.data.records import Schema
from fedsynth.models.autoencoder import MultimodalAutoencoder
from fedsynth.models.gaussian import GaussianLatentModel
from fedsynth.models.latent_gan import LatentDiscriminator, LatentGenerator

#: Names of the networks, in the order their weights are exchanged.
NETWORKS = ("autoencoder", "generator", "discriminator")

#: The networks (module paths) each training phase changes, and therefore sends back.
PHASE_NETWORKS = {
    "autoencoder": ("autoencoder",),
    "gan": ("generator", "discriminator"),
    "image-mean": ("gaussian.image_mean",),
    "image-basis": ("gaussian.image_basis",),
    "latent-moments": ("gaussian.latent_moments",),
}


def phase_networks(phase: str) -> tuple[str, ...]:
    """Networks trained in ``phase``; a hospital returns only their weights."""
    try:
        return PHASE_NETWORKS[phase]
    except KeyError:
        raise ValueError(f"unknown training phase '{phase}' (expected one of {sorted(PHASE_NETWORKS)})") from None


def phase_arrays(names: Iterable[str], phase: str) -> list[str]:
    """The array names, among ``names``, that ``phase`` changes."""
    prefixes = tuple(f"{net}." for net in phase_networks(phase))
    return [k for k in names if k.startswith(prefixes)]


class MultimodalGenerator(nn.Module):
    """All networks of the generator; its ``state_dict`` is what hospitals and server exchange."""

    def __init__(self, schema: Schema, config: ModelConfig) -> None:
        super().__init__()
        self.schema = schema
        self.config = config
        self.autoencoder = MultimodalAutoencoder(schema, config)
        self.generator = LatentGenerator(
            config.noise_dim, schema.num_classes, self.autoencoder.latent_dim, config.gan_hidden
        )
        self.discriminator = LatentDiscriminator(self.autoencoder.latent_dim, schema.num_classes, config.gan_hidden)
        #: The Gaussian latent model's released sums (only when it is the run's latent model).
        self.gaussian = GaussianLatentModel(schema, config) if config.latent_model == "gaussian" else None

    def weights(self) -> OrderedDict[str, np.ndarray]:
        """Named float32 arrays of every network (a copy, on the CPU)."""
        return OrderedDict((k, v.detach().cpu().numpy().copy()) for k, v in self.state_dict().items())

    def load_weights(self, arrays: dict[str, np.ndarray]) -> None:
        """Load named arrays in place (models stay on their device)."""
        own = self.state_dict()
        missing = sorted(set(own) - set(arrays))
        unexpected = sorted(set(arrays) - set(own))
        if missing or unexpected:
            raise ValueError(f"weights do not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
        with torch.no_grad():
            for name, tensor in own.items():
                value = torch.as_tensor(arrays[name])
                if value.shape != tensor.shape:
                    raise ValueError(f"weight '{name}' has shape {tuple(value.shape)}, expected {tuple(tensor.shape)}")
                tensor.copy_(value.to(tensor.device, tensor.dtype))

    @torch.no_grad()
    def sample(
        self, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Stage 2 + 3: synthetic (images, clinical rows) for the given conditioning labels."""
        if self.gaussian is not None:
            return self.gaussian.sample(labels, generator)
        device = next(self.parameters()).device
        noise = torch.randn(labels.shape[0], self.config.noise_dim, generator=generator, device="cpu").to(device)
        labels = labels.to(device)
        return self.autoencoder.decode(self.generator(noise, labels), labels, generator)


def build_generator(schema: Schema, config: ModelConfig, seed: int) -> MultimodalGenerator:
    """The generator with seeded initial weights: server and hospitals build identical copies."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MultimodalGenerator(schema, config)
