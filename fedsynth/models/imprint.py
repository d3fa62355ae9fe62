"""An architecture a malicious server might ship: a linear imprint block in front of the image encoder.

In a Flower deployment the server ships the application, so it can change the network. The
imprint block (after "Robbing the Fed: Directly Obtaining Private Data in Federated Learning with
Modified Models") maps the flattened image through K rows that all measure one linear function of
the input, a ReLU, and a second layer whose K columns are identical, and adds the result back to
the image: ``x' = x + reshape(W2 relu(W1 x + b1))``. The honest encoder then runs on ``x'``. With
the server's weights (identical rows, biases at quantiles of the measurement), the gradient of
row i is the sum of the inputs whose measurement exceeds the i-th threshold, so differences of
adjacent rows isolate single records. fedsynth builds this architecture only so the red team runs
through the real hospital code; a site trains it only when its policy accepts the architecture.
"""

from __future__ import annotations

import torch
from torch import nn

from fedsynth.models.image_autoencoder import ImageEncoder

IMPRINT_ARCHITECTURE = "imprint-block-v1"


class ImprintBlock(nn.Module):
    """(B, C, H, W) -> same shape: the image plus a K-bin imprint of it (see the module docstring)."""

    def __init__(self, image_shape: tuple[int, int, int], bins: int) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        size = int(torch.tensor(image_shape).prod())
        self.first = nn.Linear(size, bins)
        self.second = nn.Linear(bins, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return x + self.second(torch.relu(self.first(flat))).view_as(x)


class ImprintedImageEncoder(ImageEncoder):
    """The honest image encoder with an :class:`ImprintBlock` in front (parameter names unchanged,
    plus ``imprint.first`` and ``imprint.second``)."""

    def __init__(
        self, image_shape: tuple[int, int, int], latent_dim: int, channels: int, groups: int, bins: int
    ) -> None:
        super().__init__(image_shape, latent_dim, channels, groups)
        self.imprint = ImprintBlock(image_shape, bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.imprint(x))
