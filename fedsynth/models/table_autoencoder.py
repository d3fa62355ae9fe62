"""Stage 1, clinical modality: an MLP encoder/decoder with proper categorical handling.

Numeric columns are scaled to [0, 1] with the schema's *public* bounds (never statistics of the
training data); the decoder gives each a Gaussian (mean through a sigmoid, learned log-variance,
trained by negative log-likelihood) from which synthetic values are *sampled*. Categorical columns
are one-hot encoded and decoded as one softmax per column (cross-entropy), also sampled. Sampling
matters: a decoder that returned its mean would give synthetic columns almost no spread within a
class, and a classifier trained on them would latch onto tiny class-mean differences.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fedsynth.data.records import Schema

#: Bounds of a numeric column's log-variance in [0, 1]-scaled units (std from 0.03 to 0.6), and
#: its value for a zero network output (std 0.14: a modest prior before training).
LOGVAR_MIN, LOGVAR_MAX, LOGVAR_INIT = -7.0, -1.0, -4.0


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

    @property
    def output_dim(self) -> int:
        """Decoder outputs: mean logit and log-variance per numeric column, then category logits."""
        return 2 * len(self.numeric) + sum(self.cardinalities)

    def encode(self, clinical: torch.Tensor) -> torch.Tensor:
        """(B, k) raw rows -> (B, input_dim): scaled numerics then one-hots."""
        low, high = self.low.to(clinical.device), self.high.to(clinical.device)
        parts = [((clinical[:, self.numeric] - low) / (high - low)).clamp(0, 1)]
        for j, card in zip(self.categorical, self.cardinalities):
            parts.append(F.one_hot(clinical[:, j].long(), card).float())
        return torch.cat(parts, dim=1)

    def split_output(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Decoder output -> (numeric means in [0, 1], numeric log-variances, categorical logits)."""
        n = len(self.numeric)
        mean = torch.sigmoid(out[:, :n])
        logvar = (LOGVAR_INIT + out[:, n : 2 * n]).clamp(LOGVAR_MIN, LOGVAR_MAX)
        rest = out[:, 2 * n :]
        logits = list(torch.split(rest, self.cardinalities, dim=1)) if self.cardinalities else []
        return mean, logvar, logits

    def loss(self, out: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        """Per-sample reconstruction loss (B,): Gaussian NLL on scaled numerics + CE per categorical."""
        target = self.encode(clinical)
        mean, logvar, logits = self.split_output(out)
        n = len(self.numeric)
        nll = 0.5 * ((target[:, :n] - mean) ** 2 * torch.exp(-logvar) + logvar - LOGVAR_MIN)
        loss = nll.sum(dim=1)
        for j, logit in zip(self.categorical, logits):
            loss = loss + F.cross_entropy(logit, clinical[:, j].long(), reduction="none")
        return loss

    def decode(self, out: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder output -> (B, k) rows in data units (numerics rescaled, categories as codes).

        Categories are *sampled* from each column's softmax: taking the argmax would give every
        record of a region of latent space (often: of a class) the same category, a spurious,
        perfectly label-correlated column.
        """
        mean, logvar, logits = self.split_output(out)
        rows = torch.zeros(out.shape[0], len(self.schema.columns), device=out.device)
        low, high = self.low.to(out.device), self.high.to(out.device)
        noise = torch.randn(mean.shape, generator=generator).to(out.device)
        scaled = (mean + torch.exp(0.5 * logvar) * noise).clamp(0, 1)
        rows[:, self.numeric] = low + scaled * (high - low)
        for j, logit in zip(self.categorical, logits):
            probs = torch.softmax(logit.float(), dim=1).cpu()
            rows[:, j] = torch.multinomial(probs, 1, generator=generator).squeeze(1).float().to(out.device)
        return rows


class TableEncoder(nn.Module):
    """Encoded clinical row -> (B, 2 * latent_dim): posterior mean then log-variance."""

    def __init__(self, input_dim: int, hidden: int, latent_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


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
