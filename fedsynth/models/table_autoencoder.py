"""Stage 1, clinical modality: an MLP encoder/decoder with proper categorical handling.

Numeric columns are scaled to [0, 1] with the schema's *public* bounds (never statistics of the
training data) and decoded through a sigmoid; categorical columns are one-hot encoded and decoded
as one softmax per column, trained with cross-entropy.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fedsynth.data.records import Schema


class TableCodec:
    """Stateless translation between clinical rows (values / category codes) and network space."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.numeric = [j for j, c in enumerate(schema.columns) if c.kind == "numeric"]
        self.categorical = [j for j, c in enumerate(schema.columns) if c.kind == "categorical"]
        self.cardinalities = [len(schema.columns[j].categories) for j in self.categorical]
        self.low = torch.tensor([schema.columns[j].low for j in self.numeric], dtype=torch.float32)
        self.high = torch.tensor([schema.columns[j].high for j in self.numeric], dtype=torch.float32)

    @property
    def input_dim(self) -> int:
        return len(self.numeric) + sum(self.cardinalities)

    def encode(self, clinical: torch.Tensor) -> torch.Tensor:
        """(B, k) raw rows -> (B, input_dim): scaled numerics then one-hots."""
        low, high = self.low.to(clinical.device), self.high.to(clinical.device)
        parts = [((clinical[:, self.numeric] - low) / (high - low)).clamp(0, 1)]
        for j, card in zip(self.categorical, self.cardinalities):
            parts.append(F.one_hot(clinical[:, j].long(), card).float())
        return torch.cat(parts, dim=1)

    def split_output(self, out: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Decoder output -> (numeric in [0, 1] pre-sigmoid logits, list of categorical logits)."""
        n = len(self.numeric)
        numeric, rest = out[:, :n], out[:, n:]
        logits = list(torch.split(rest, self.cardinalities, dim=1)) if self.cardinalities else []
        return numeric, logits

    def loss(self, out: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        """Per-sample reconstruction loss (B,): MSE on scaled numerics + CE per categorical."""
        target = self.encode(clinical)
        numeric, logits = self.split_output(out)
        n = len(self.numeric)
        loss = F.mse_loss(torch.sigmoid(numeric), target[:, :n], reduction="none").sum(dim=1)
        for j, logit in zip(self.categorical, logits):
            loss = loss + F.cross_entropy(logit, clinical[:, j].long(), reduction="none")
        return loss

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder output -> (B, k) rows in data units (numerics rescaled, categories as codes)."""
        numeric, logits = self.split_output(out)
        rows = torch.zeros(out.shape[0], len(self.schema.columns), device=out.device)
        low, high = self.low.to(out.device), self.high.to(out.device)
        rows[:, self.numeric] = low + torch.sigmoid(numeric) * (high - low)
        for j, logit in zip(self.categorical, logits):
            rows[:, j] = logit.argmax(dim=1).float()
        return rows


class TableEncoder(nn.Module):
    """Encoded clinical row -> latent in [-1, 1]."""

    def __init__(self, input_dim: int, hidden: int, latent_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, latent_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(x))


class TableDecoder(nn.Module):
    """Latent -> decoder output (numeric logits then categorical logits), see :class:`TableCodec`."""

    def __init__(self, latent_dim: int, hidden: int, output_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, output_dim),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
