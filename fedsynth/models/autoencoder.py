"""Stage 1 as one network: the per-modality encoders/decoders trained jointly.

Training both modalities in one module means one DP-SGD mechanism per step (each record is
clipped once over all its modalities), instead of two mechanisms that would both be charged.
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
        self.image_latent_dim = config.image_latent_dim if schema.has_image else 0
        self.table_latent_dim = config.table_latent_dim if schema.has_table else 0
        self.codec = TableCodec(schema) if schema.has_table else None
        if schema.has_image:
            assert schema.image_shape is not None
            self.image_encoder = ImageEncoder(
                schema.image_shape, config.image_latent_dim, config.image_channels, config.groups
            )
            self.image_decoder = ImageDecoder(
                schema.image_shape, config.image_latent_dim, config.image_channels, config.groups
            )
        if self.codec is not None:
            self.table_encoder = TableEncoder(self.codec.input_dim, config.table_hidden, config.table_latent_dim)
            self.table_decoder = TableDecoder(config.table_latent_dim, config.table_hidden, self.codec.input_dim)

    @property
    def latent_dim(self) -> int:
        return self.image_latent_dim + self.table_latent_dim

    def encode(self, images: torch.Tensor | None, clinical: torch.Tensor | None) -> torch.Tensor:
        """Joint latent vector: image latent then table latent."""
        parts = []
        if self.schema.has_image:
            parts.append(self.image_encoder(images))
        if self.codec is not None:
            parts.append(self.table_encoder(self.codec.encode(clinical)))
        return torch.cat(parts, dim=1)

    def decode(self, latent: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Joint latent -> (images in [0, 1], clinical rows in data units)."""
        images = clinical = None
        if self.schema.has_image:
            images = self.image_decoder(latent[:, : self.image_latent_dim])
        if self.codec is not None:
            clinical = self.codec.decode(self.table_decoder(latent[:, self.image_latent_dim :]))
        return images, clinical

    def forward(self, images: torch.Tensor | None, clinical: torch.Tensor | None) -> torch.Tensor:
        """Per-sample reconstruction loss (B,) over all modalities (the DP-SGD training objective)."""
        loss = None
        if self.schema.has_image:
            rec = self.image_decoder(self.image_encoder(images))
            loss = F.mse_loss(rec, images, reduction="none").flatten(1).mean(dim=1) * 10.0
        if self.codec is not None:
            out = self.table_decoder(self.table_encoder(self.codec.encode(clinical)))
            table_loss = self.codec.loss(out, clinical) / max(len(self.schema.columns), 1)
            loss = table_loss if loss is None else loss + table_loss
        assert loss is not None
        return loss
