"""Stage 1 as one network: the per-modality encoders/decoders, trained jointly as a variational
autoencoder.

Training both modalities in one module means one DP-SGD mechanism per step (each record is
clipped once over all its modalities), instead of two mechanisms that would both be charged.

The KL term keeps the joint latent close to N(0, I), so latents the stage-2 generator produces
near that distribution decode to plausible records even before the GAN has converged (important
under DP noise and FedAvg). The decoders are conditioned on the label (one-hot appended to the
latent), so stage 3 renders class-specific detail (e.g. lesions) that a small latent would
otherwise blur away. A small label head on the joint latent (weighted by ``label_weight``) makes the latent space keep
what separates the classes, which the stage-2 conditional GAN then has to reproduce; the label is
part of the record, so this costs no privacy beyond the same DP-SGD steps.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fedsynth.config.schema import ModelConfig
from fedsynth.data.records import Schema
from fedsynth.models.image_autoencoder import ImageDecoder, ImageEncoder
from fedsynth.models.table_autoencoder import TableCodec, TableDecoder, TableEncoder


class MultimodalAutoencoder(nn.Module):
    """Encoders and decoders of every modality the schema has."""

    def __init__(self, schema: Schema, config: ModelConfig) -> None:
        super().__init__()
        self.schema = schema
        self.label_weight = config.label_weight
        self.image_weight = config.image_loss_weight
        self.table_weight = config.table_loss_weight
        self.kl_weight = config.kl_weight
        self.image_latent_dim = config.image_latent_dim if schema.has_image else 0
        self.table_latent_dim = config.table_latent_dim if schema.has_table else 0
        self.codec = TableCodec(schema) if schema.has_table else None
        k = schema.num_classes
        if schema.has_image:
            assert schema.image_shape is not None
            c, g = config.image_channels, config.groups
            self.image_encoder = ImageEncoder(schema.image_shape, config.image_latent_dim, c, g)
            self.image_decoder = ImageDecoder(schema.image_shape, config.image_latent_dim + k, c, g)
        if self.codec is not None:
            h, d = config.table_hidden, config.table_latent_dim
            self.table_encoder = TableEncoder(self.codec.input_dim, h, d)
            self.table_decoder = TableDecoder(d + k, h, self.codec.output_dim)
        if self.label_weight > 0:
            self.label_head = nn.Linear(self.latent_dim, k)

    @property
    def latent_dim(self) -> int:
        return self.image_latent_dim + self.table_latent_dim

    def posterior(
        self, images: torch.Tensor | None, clinical: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of the joint latent (image part, then table part)."""
        means, logvars = [], []
        if self.schema.has_image:
            m, lv = self.image_encoder(images).chunk(2, dim=1)
            means.append(m)
            logvars.append(lv)
        if self.codec is not None:
            m, lv = self.table_encoder(self.codec.encode(clinical)).chunk(2, dim=1)
            means.append(m)
            logvars.append(lv)
        return torch.cat(means, dim=1), torch.cat(logvars, dim=1).clamp(-8, 4)

    def encode(self, images: torch.Tensor | None, clinical: torch.Tensor | None) -> torch.Tensor:
        """Joint latent vector of a record (the posterior mean): what the stage-2 GAN learns."""
        return self.posterior(images, clinical)[0]

    def _conditioned(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.cat([z, F.one_hot(labels, self.schema.num_classes).to(z.dtype)], dim=1)

    def decode(
        self, latent: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Joint latent + label -> (images in [0, 1], clinical rows in data units); ``generator``
        drives the sampling of categorical columns."""
        images = clinical = None
        split = self.image_latent_dim
        if self.schema.has_image:
            images = self.image_decoder(self._conditioned(latent[:, :split], labels))
        if self.codec is not None:
            clinical = self.codec.decode(self.table_decoder(self._conditioned(latent[:, split:], labels)), generator)
        return images, clinical

    def forward(
        self, images: torch.Tensor | None, clinical: torch.Tensor | None, labels: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """Per-sample training loss (B,): reconstruction of every modality from a posterior sample
        (``noise`` ~ N(0, I), drawn by the caller for reproducibility), KL to N(0, I), label loss."""
        mean, logvar = self.posterior(images, clinical)
        z = mean + torch.exp(0.5 * logvar) * noise
        split = self.image_latent_dim
        loss = self.kl_weight * 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1).sum(dim=1)
        if self.schema.has_image:
            rec = self.image_decoder(self._conditioned(z[:, :split], labels))
            loss = loss + self.image_weight * F.mse_loss(rec, images, reduction="none").flatten(1).mean(dim=1)
        if self.codec is not None:
            out = self.table_decoder(self._conditioned(z[:, split:], labels))
            loss = loss + self.table_weight * self.codec.loss(out, clinical) / len(self.schema.columns)
        if self.label_weight > 0:
            loss = loss + self.label_weight * F.cross_entropy(self.label_head(mean), labels, reduction="none")
        return loss
