"""A non-adversarial latent model: DP principal components of the images and a class-conditional
Gaussian on the joint latent vector, learnt from three Gaussian-mechanism releases.

Why: at the record counts of a hospital consortium, a handful of full-data releases of clipped
sums spends a budget far better than thousands of noisy DP-SGD steps on an autoencoder and a GAN.
The model keeps the three stages of the generator: a linear per-modality encoder/decoder (the
image principal components, the table scaled by its public bounds), a label-conditioned model of
the joint latent vector (a Gaussian per class), and a decoder back to
image + clinical row.

Each hospital releases, in three rounds, noisy *sums* over its records (the server adds them up):

``image-mean``
    per class: the record count and the sum of ``(image - 0.5) / R0``, clipped to norm 1, with
    ``R0 = mean_clip * sqrt(D)``, each half of the record's squared contribution.
``image-basis``
    per class: the sum of ``x x^T`` with ``x = (image - class centre) / R``, clipped to norm 1,
    where the class centres come from the first release and ``R = image_clip * sqrt(D)`` (a record
    lands in its own class's block only, so the per-class split costs no sensitivity). The leading
    eigenvectors of the classes' total, together with the directions between the class centres,
    are the image basis; each class's diagonal gives the pixel variance the basis leaves out.
``latent-moments``
    per class: the count, the sum of the latent ``u = [w_i V^T x, w_t t]`` (clipped to norm 1;
    ``t`` is the table scaled to [-1, 1] by its public bounds, divided by sqrt of its width), and
    the sum of ``u u^T``.

One record's contribution to a release is a vector of norm at most ``sqrt(share)`` (the share of
the budget the release gets; the shares of the three add up to 1), whatever the centres and basis
the server sent, because the hospital clips after applying them. Every release adds N(0, sigma^2)
to each coordinate of that vector (symmetric matrices as their upper triangle, off-diagonal
entries scaled by sqrt(2), so the Frobenius norm is the vector norm), which is the Gaussian mechanism
at sensitivity ``sqrt(share)``: a ledger event with sample rate 1, one step and that sensitivity.

Fitting is post-processing of the summed releases: centres and counts are ratios of sums; the
covariance eigenvalues are shrunk by the magnitude of the most negative one (the covariance is
positive semi-definite, so negative eigenvalues are noise and measure its spectral edge); the
image variance the basis leaves out is put back as independent per-pixel noise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from fedsynth.config.schema import ModelConfig, TrainConfig
from fedsynth.data.records import Schema

#: The rounds of the Gaussian latent model, in order.
GAUSSIAN_PHASES = ("image-mean", "image-basis", "latent-moments")

#: The top-level module holding each phase's released sums (its name in the exchanged weights).
PHASE_MODULE = {"image-mean": "image_mean", "image-basis": "image_basis", "latent-moments": "latent_moments"}

#: Shares of the latent-moments release's record norm: counts, class sums, second moment.
COUNT_SHARE, SUM_SHARE = 0.02, 0.30
MOMENT_SHARE = 1.0 - COUNT_SHARE - SUM_SHARE


def phase_share(train: TrainConfig, phase: str) -> float:
    """Share of the run's budget (squared sensitivity) one phase's release gets."""
    if phase == "image-mean":
        return train.gaussian_mean_share
    if phase == "image-basis":
        return train.gaussian_basis_share
    if phase == "latent-moments":
        return 1.0 - train.gaussian_mean_share - train.gaussian_basis_share
    raise ValueError(f"unknown phase {phase!r} of the Gaussian latent model (expected one of {GAUSSIAN_PHASES})")


def phase_sensitivity(train: TrainConfig, phase: str) -> float:
    """Largest norm of one record's contribution to the phase's release, in units of the noise's C."""
    return math.sqrt(phase_share(train, phase))


# -- representation ------------------------------------------------------------------------------
def table_vectors(clinical: torch.Tensor, schema: Schema) -> torch.Tensor:
    """(n, T): numeric columns scaled to [-1, 1] by their public bounds, categoricals one-hot in
    {-1, 1}, all divided by sqrt(T), so every row has norm at most 1."""
    parts = []
    for j, col in enumerate(schema.columns):
        values = clinical[:, j].to(torch.float64)
        if col.kind == "numeric":
            assert col.low is not None and col.high is not None
            parts.append(((values - col.low) / (col.high - col.low)).clamp(0, 1).unsqueeze(1) * 2 - 1)
        else:
            codes = values.round().long().clamp(0, len(col.categories) - 1)
            parts.append(nn.functional.one_hot(codes, len(col.categories)).to(torch.float64) * 2 - 1)
    table = torch.cat(parts, dim=1)
    return table / math.sqrt(table.shape[1])


def table_rows(vectors: np.ndarray, schema: Schema) -> np.ndarray:
    """Inverse of :func:`table_vectors` for latent draws: values clipped to the public bounds,
    the category of the largest one-hot entry."""
    t = vectors * math.sqrt(vectors.shape[1])
    cols, pos = [], 0
    for col in schema.columns:
        if col.kind == "numeric":
            assert col.low is not None and col.high is not None
            cols.append(col.low + (np.clip(t[:, pos], -1, 1) + 1) / 2 * (col.high - col.low))
            pos += 1
        else:
            k = len(col.categories)
            cols.append(np.argmax(t[:, pos : pos + k], axis=1).astype(np.float64))
            pos += k
    return np.stack(cols, axis=1)


def table_width(schema: Schema) -> int:
    return sum(1 if c.kind == "numeric" else len(c.categories) for c in schema.columns)


def clip_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled down to norm at most 1."""
    return x / x.norm(dim=1, keepdim=True).clamp(min=1.0)


def sym_to_vector(m: torch.Tensor) -> torch.Tensor:
    """Upper triangle of a symmetric matrix, off-diagonal entries times sqrt(2) (norm-preserving)."""
    d = m.shape[0]
    rows, cols = torch.triu_indices(d, d)
    scale = torch.where(rows == cols, 1.0, math.sqrt(2.0)).to(m.dtype)
    return m[rows, cols] * scale


def vector_to_sym(v: torch.Tensor, d: int) -> torch.Tensor:
    """Inverse of :func:`sym_to_vector`."""
    rows, cols = torch.triu_indices(d, d)
    scale = torch.where(rows == cols, 1.0, math.sqrt(2.0)).to(v.dtype)
    m = torch.zeros(d, d, dtype=v.dtype)
    m[rows, cols] = v / scale
    return m + torch.triu(m, 1).T


# -- the model's released sums -------------------------------------------------------------------
class ReleasedSums(nn.Module):
    """Buffers holding one phase's summed releases (float32 on the wire, zeros until released)."""

    def __init__(self, **shapes: tuple[int, ...]) -> None:
        super().__init__()
        for name, shape in shapes.items():
            self.register_buffer(name, torch.zeros(shape, dtype=torch.float32))


class GaussianLatentModel(nn.Module):
    """The three phases' summed releases, and what the model derives from them."""

    def __init__(self, schema: Schema, config: ModelConfig) -> None:
        super().__init__()
        self.schema = schema
        self.config = config
        k = schema.num_classes
        self.image_dim = int(np.prod(schema.image_shape)) if schema.image_shape is not None else 0
        self.basis_dim = min(config.basis_dim, self.image_dim) if self.image_dim else 0
        self.table_dim = table_width(schema) if schema.has_table else 0
        self.latent_dim = self.basis_dim + self.table_dim
        if self.latent_dim == 0:
            raise ValueError("the Gaussian latent model needs an image or a clinical table")
        d = self.latent_dim
        self.image_mean = ReleasedSums(sums=(k, self.image_dim + 1))
        self.image_basis = ReleasedSums(moment=(k, self.image_dim * (self.image_dim + 1) // 2))
        self.latent_moments = ReleasedSums(counts=(k,), sums=(k, d), moment=(k, d * (d + 1) // 2))

    # public constants of the representation
    @property
    def mean_radius(self) -> float:
        return self.config.mean_clip * math.sqrt(self.image_dim)

    @property
    def image_radius(self) -> float:
        return self.config.image_clip * math.sqrt(self.image_dim)

    @property
    def weights(self) -> tuple[float, float]:
        """Norm weights of the image and table parts of the latent vector."""
        if not self.basis_dim:
            return 0.0, 1.0
        if not self.table_dim:
            return 1.0, 0.0
        return math.sqrt(1 - self.config.table_share), math.sqrt(self.config.table_share)

    # -- what the hospitals release (the sums over their records, before noise) ----------------
    def flat_images(self, images: torch.Tensor) -> torch.Tensor:
        return images.reshape(images.shape[0], -1).to(torch.float64)

    def mean_contributions(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(K, D + 1) sums: per class, count / sqrt(2) then the sum of (image - 0.5) / (R0 sqrt(2))."""
        x = clip_rows((self.flat_images(images) - 0.5) / self.mean_radius)
        rows = torch.cat([torch.ones(len(x), 1, dtype=x.dtype), x], dim=1) / math.sqrt(2.0)
        return self._per_class(rows, labels)

    def basis_contributions(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``moment`` (K, D (D + 1) / 2): per class, the upper-triangle vector of the sum of
        x x^T over the class's records, x = (image - class centre) / R clipped to norm 1."""
        return {"moment": self._per_class_moments(self.centred(images, labels), labels)}

    def moment_contributions(
        self, images: torch.Tensor | None, clinical: torch.Tensor | None, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        u = self.latents(images, clinical, labels)
        k = self.schema.num_classes
        counts = torch.bincount(labels, minlength=k).to(torch.float64) * math.sqrt(COUNT_SHARE)
        return {
            "counts": counts,
            "sums": self._per_class(u, labels) * math.sqrt(SUM_SHARE),
            "moment": self._per_class_moments(u, labels) * math.sqrt(MOMENT_SHARE),
        }

    def _per_class_moments(self, rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(K, d (d + 1) / 2): per class, the upper-triangle vector of the sum of row row^T."""
        labels = labels.cpu()
        return torch.stack(
            [sym_to_vector(rows[labels == c].T @ rows[labels == c]) for c in range(self.schema.num_classes)]
        )

    def _per_class(self, rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.schema.num_classes, rows.shape[1], dtype=rows.dtype)
        return out.index_add_(0, labels.cpu(), rows)

    def centred(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(image - class centre) / R, clipped to norm 1 (centres from the image-mean release)."""
        centres = torch.as_tensor(self.centres(), dtype=torch.float64)
        return clip_rows((self.flat_images(images) - centres[labels.cpu()]) / self.image_radius)

    def latents(self, images: torch.Tensor | None, clinical: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        """Joint latent vectors u (n, d), clipped to norm 1."""
        w_image, w_table = self.weights
        parts = []
        if self.basis_dim:
            assert images is not None
            basis = torch.as_tensor(self.basis()[0], dtype=torch.float64)
            parts.append(w_image * clip_rows(self.centred(images, labels) @ basis))
        if self.table_dim:
            assert clinical is not None
            parts.append(w_table * table_vectors(clinical.cpu(), self.schema))
        return clip_rows(torch.cat(parts, dim=1))

    # -- what everyone derives from the summed releases ----------------------------------------
    def centres(self) -> np.ndarray:
        """(K, D) class centres in pixel values (0.5 for a class without released mass)."""
        sums = self.image_mean.sums.double().numpy()
        count = np.maximum(sums[:, :1], 1e-9)
        centres = 0.5 + sums[:, 1:] / count * self.mean_radius
        return np.clip(np.where(sums[:, :1] > 0.5, centres, 0.5), 0.0, 1.0)

    def basis(self) -> tuple[np.ndarray, np.ndarray]:
        """(D, k) orthonormal image basis (the directions between class centres, then leading
        eigenvectors of the released second moment of all classes) and, per class (K, D), the
        pixel variance it leaves out (in units of R^2 per record). Deterministic: eigenvector
        signs are fixed."""
        d = self.image_dim
        blocks = [vector_to_sym(b, d).numpy() for b in self.image_basis.moment.double()]
        _, vectors = np.linalg.eigh(sum(blocks))
        vectors = vectors[:, ::-1]
        centres = self.centres()
        between = (centres[1:] - centres[:1]).T
        norms = np.linalg.norm(between, axis=0)
        between = between[:, norms > 1e-6] / norms[norms > 1e-6]
        k = self.basis_dim
        q, r = np.linalg.qr(np.concatenate([between[:, : k - 1], vectors[:, :k]], axis=1))
        basis = q[:, np.abs(np.diag(r)) > 1e-8][:, :k]
        signs = np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(basis.shape[1])])
        basis = basis * np.where(signs == 0, 1.0, signs)
        residual = []
        for block, n in zip(blocks, self.class_counts()):
            # the class's pixel variance minus what its variance inside the basis explains,
            # smoothed before the negative part is cut off (release noise then averages out
            # instead of piling up as variance)
            inside = ((basis @ (basis.T @ block @ basis)) * basis).sum(axis=1)
            left = _smooth_pixels(np.diag(block) - inside, self.schema.image_shape)
            residual.append(np.maximum(left, 0.0) / max(n, 1.0))
        return basis, np.stack(residual)

    def class_counts(self) -> np.ndarray:
        """Record count per class, as released (noisy)."""
        if self.image_dim:
            return np.maximum(self.image_mean.sums[:, 0].double().numpy() * math.sqrt(2.0), 0.0)
        return np.maximum(self.latent_moments.counts.double().numpy() / math.sqrt(COUNT_SHARE), 0.0)

    def class_gaussians(self) -> tuple[np.ndarray, np.ndarray]:
        """Class means (K, d) and factors L (K, d, d) of the class covariances L L^T."""
        m = self.latent_moments
        counts = np.maximum(m.counts.double().numpy() / math.sqrt(COUNT_SHARE), 1.0)
        means = m.sums.double().numpy() / math.sqrt(SUM_SHARE) / counts[:, None]
        factors = []
        for c, block in enumerate(m.moment.double()):
            second = vector_to_sym(block, self.latent_dim).numpy() / math.sqrt(MOMENT_SHARE)
            cov = second / counts[c] - np.outer(means[c], means[c])
            values, vectors = np.linalg.eigh((cov + cov.T) / 2)
            edge = max(0.0, -float(values[0]))
            factors.append(vectors * np.sqrt(np.maximum(values - edge, 0.0)))
        return means, np.stack(factors)

    @torch.no_grad()
    def sample(
        self, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Synthetic (images, clinical rows) for the given labels."""
        labels_np = labels.cpu().numpy()
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        rng = np.random.default_rng(seed)
        means, factors = self.class_gaussians()
        z = rng.standard_normal((len(labels_np), self.latent_dim))
        u = means[labels_np] + np.einsum("nij,nj->ni", factors[labels_np], z)
        w_image, w_table = self.weights
        images = clinical = None
        if self.basis_dim:
            assert self.schema.image_shape is not None
            basis, residual = self.basis()
            x = u[:, : self.basis_dim] / w_image @ basis.T
            x = x + rng.standard_normal(x.shape) * np.sqrt(residual[labels_np])
            flat = np.clip(self.centres()[labels_np] + x * self.image_radius, 0.0, 1.0)
            images = torch.as_tensor(flat.reshape(len(labels_np), *self.schema.image_shape), dtype=torch.float32)
        if self.table_dim:
            rows = table_rows(u[:, self.basis_dim :] / w_table, self.schema)
            clinical = torch.as_tensor(rows, dtype=torch.float32)
        return images, clinical


def _smooth_pixels(values: np.ndarray, shape: tuple[int, int, int] | None) -> np.ndarray:
    """Mean over each pixel's 3 x 3 neighbourhood (per channel, edges replicated); (..., D) in and out."""
    assert shape is not None
    c, h, w = shape
    img = values.reshape(*values.shape[:-1], c, h, w)
    pad = [(0, 0)] * (img.ndim - 2) + [(1, 1), (1, 1)]
    padded = np.pad(img, pad, mode="edge")
    out = sum(padded[..., i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0
    return out.reshape(values.shape)
