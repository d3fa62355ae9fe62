"""Stage 1, image modality: a convolutional encoder/decoder pair.

Opacus-compatible by construction: GroupNorm instead of BatchNorm, no spectral norm. The encoder
maps an image to the mean and log-variance of a Gaussian posterior over its latent vector (a
variational autoencoder), so latents stay close to N(0, I): the space in which the stage-2 GAN works.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _down(cin: int, cout: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.GroupNorm(groups, cout), nn.SiLU())


def _up(cin: int, cout: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.GroupNorm(groups, cout), nn.SiLU())


class ImageEncoder(nn.Module):
    """(B, C, H, W) in [0, 1] -> (B, 2 * latent_dim): posterior mean then log-variance."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int, channels: int, groups: int) -> None:
        super().__init__()
        c, h, w = image_shape
        self.features = nn.Sequential(
            _down(c, channels, groups),
            _down(channels, 2 * channels, groups),
            _down(2 * channels, 4 * channels, groups),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, c, h, w)).numel()
        self.head = nn.Linear(flat, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x * 2 - 1).flatten(1))


class ImageDecoder(nn.Module):
    """(B, latent_dim) -> (B, C, H, W) in [0, 1]; mirrors the encoder and crops to H x W."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int, channels: int, groups: int) -> None:
        super().__init__()
        c, h, w = image_shape
        self.image_shape = image_shape
        self.base = (4 * channels, math.ceil(h / 8), math.ceil(w / 8))
        self.head = nn.Linear(latent_dim, self.base[0] * self.base[1] * self.base[2])
        self.features = nn.Sequential(
            _up(4 * channels, 2 * channels, groups),
            _up(2 * channels, channels, groups),
            nn.ConvTranspose2d(channels, c, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _, h, w = self.image_shape
        x = self.head(z).view(z.shape[0], *self.base)
        return torch.sigmoid(self.features(torch.nn.functional.silu(x))[:, :, :h, :w])
