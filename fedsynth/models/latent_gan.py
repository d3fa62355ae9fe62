"""Stage 2: a label-conditioned GAN on the joint latent vector.

The discriminator has a projection head (Miyato & Koyama 2018) for the real/fake score and an
auxiliary classifier head (AC-GAN) that predicts the label; both are Opacus-compatible (Linear,
Embedding, no normalization). Only the discriminator sees real records, so only it is trained
with DP-SGD; the generator learns through the discriminator's outputs (post-processing).
"""

from __future__ import annotations

import torch
from torch import nn


class LatentGenerator(nn.Module):
    """(noise, label) -> latent vector (unbounded, like the autoencoder's posterior means).

    The output is a residual on the autoencoder's prior: ``noise[:, :latent_dim] + net(noise, y)``
    with the last layer initialized to zero. Before any training the generator samples N(0, I),
    which the variational decoder already turns into plausible records, and it keeps full support
    while the GAN refines it (less mode dropping under few, noisy discriminator steps).
    """

    def __init__(self, noise_dim: int, num_classes: int, latent_dim: int, hidden: int) -> None:
        super().__init__()
        if noise_dim < latent_dim:
            raise ValueError(f"noise_dim ({noise_dim}) must be at least the latent dimension ({latent_dim})")
        self.noise_dim = noise_dim
        self.latent_dim = latent_dim
        self.embed = nn.Embedding(num_classes, noise_dim)
        self.net = nn.Sequential(
            nn.Linear(2 * noise_dim, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, latent_dim),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return noise[:, : self.latent_dim] + self.net(torch.cat([noise, self.embed(labels)], dim=1))


class LatentDiscriminator(nn.Module):
    """(latent, label) -> (real/fake logit (B,), class logits (B, num_classes)).

    Any leading shape works: latents (B, 2, d) with labels (B, 2) give logits (B, 2) and class
    logits (B, 2, num_classes), which is how a record's real and fake rows share one per-sample
    gradient under DP-SGD.
    """

    def __init__(self, latent_dim: int, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2)
        )
        self.score = nn.Linear(hidden, 1)
        self.projection = nn.Embedding(num_classes, hidden)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, latent: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(latent)
        score = self.score(h).squeeze(-1) + (self.projection(labels) * h).sum(dim=-1)
        return score, self.classifier(h)
