"""The linear-imprint attack recovers records from real autograd gradients and SGD updates."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from fedsynth.attacks.imprint import (
    ImprintDesign,
    Reconstruction,
    calibrate,
    equalize_columns,
    expected_exact_recoveries,
    expected_exact_recoveries_poisson,
    imprint_rows,
    invert,
    mean_brightness_measurement,
    plant,
    random_measurement,
    stack,
)
from fedsynth.attacks.scoring import exact_recoveries, image_distances, vector_distances


class Victim(nn.Module):
    """imprint Linear(D, out) -> gate -> Linear(out, D) added to the input -> a small honest head."""

    def __init__(self, dim: int, out: int, gate: nn.Module, hidden: int = 6) -> None:
        super().__init__()
        self.imprint = nn.Linear(dim, out)
        self.gate = gate
        self.back = nn.Linear(out, dim)
        self.head = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x + self.back(self.gate(self.imprint(x))))


def build(
    design: ImprintDesign,
    gate: nn.Module,
    *,
    dtype: torch.dtype = torch.float64,
    extra_rows: int = 0,
    column_scale: float | None = None,
    seed: int = 0,
) -> tuple[Victim, list[int]]:
    """A victim model with the imprint planted in ``K`` of its rows (shuffled among ``extra_rows`` honest ones)."""
    torch.manual_seed(seed)
    out = design.bins + extra_rows
    model = Victim(design.dim, out, gate).to(dtype)
    rows = [int(r) for r in np.random.default_rng(seed).permutation(out)[: design.bins]]
    w, b = plant(model.imprint.weight.detach().numpy(), model.imprint.bias.detach().numpy(), rows, design)
    column = None
    if column_scale is not None:
        column = np.full(design.dim, column_scale)
    w2 = equalize_columns(model.back.weight.detach().numpy(), rows, column)
    with torch.no_grad():
        model.imprint.weight.copy_(torch.from_numpy(w))
        model.imprint.bias.copy_(torch.from_numpy(b))
        model.back.weight.copy_(torch.from_numpy(w2))
    return model, rows


def loss_of(model: nn.Module, x: np.ndarray, seed: int = 1) -> torch.Tensor:
    dtype = next(model.parameters()).dtype
    xt = torch.as_tensor(x, dtype=dtype)
    target = torch.randn(len(x), 2, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return nn.functional.mse_loss(model(xt), target)


def imprint_grad(model: Victim, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The real autograd gradient of the imprint layer's weight and bias."""
    model.zero_grad()
    loss_of(model, x).backward()
    return model.imprint.weight.grad.double().numpy(), model.imprint.bias.grad.double().numpy()


def separating_design(x: np.ndarray, v: np.ndarray, scale: float = 1.0) -> ImprintDesign:
    """Thresholds midway between the records' sorted measurements: every record alone in its bin."""
    h = np.sort(x.reshape(len(x), -1) @ v)
    inner = (h[1:] + h[:-1]) / 2
    return ImprintDesign(v, np.concatenate([[h[0] - 10.0], inner]), scale=scale)


def assert_all_recovered(x: np.ndarray, recs: list[Reconstruction], tol: float = 1e-4) -> None:
    assert len(recs) == len(x)
    got = stack(recs)
    dist, idx = vector_distances(x, got, 1.0)
    assert sorted(idx.tolist()) == list(range(len(x)))
    err = np.abs(got[idx] - x.reshape(len(x), -1)).max()
    assert err < tol, err


def test_batch_of_one_recovered_exactly_from_autograd_gradient() -> None:
    rng = np.random.default_rng(0)
    dim, bins = 20, 8
    aux = rng.standard_normal((2000, dim))
    design = calibrate(aux, random_measurement(dim, rng), bins)
    model, rows = build(design, nn.ReLU(), dtype=torch.float32)
    x = rng.standard_normal((1, dim))
    dw, db = imprint_grad(model, x)
    recs = invert(dw, db, rows)
    assert len(recs) == 1
    assert recs[0].bin == design.assign(x)[0]
    assert np.abs(recs[0].values - x[0]).max() < 1e-4


def test_whole_batch_recovered_through_plain_sgd_update() -> None:
    """Returned minus sent weights after one SGD step: -lr * gradient, the same inversion applies."""
    rng = np.random.default_rng(1)
    dim = 12
    x = rng.standard_normal((5, dim))
    design = separating_design(x, random_measurement(dim, rng))
    model, rows = build(design, nn.ReLU(), extra_rows=4)
    sent = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    opt.zero_grad()
    loss_of(model, x).backward()
    opt.step()
    returned = model.state_dict()
    dw = (returned["imprint.weight"] - sent["imprint.weight"]).numpy()
    db = (returned["imprint.bias"] - sent["imprint.bias"]).numpy()
    assert_all_recovered(x, invert(dw, db, rows))


def test_silu_with_large_scale_acts_as_a_step() -> None:
    rng = np.random.default_rng(2)
    dim = 10
    x = rng.standard_normal((6, dim))
    design = separating_design(x, random_measurement(dim, rng), scale=1e3)
    model, rows = build(design, nn.SiLU(), column_scale=1e-3)
    dw, db = imprint_grad(model, x)
    assert_all_recovered(x, invert(dw, db, rows))
    # With scale 1 the gate is soft and the same records are not recovered.
    soft, rows1 = build(ImprintDesign(design.measurement, design.thresholds, scale=1.0), nn.SiLU())
    dw1, db1 = imprint_grad(soft, x)
    dist, _ = vector_distances(x, stack(invert(dw1, db1, rows1)), 1.0)
    assert exact_recoveries(dist) < len(x)


def test_leaky_relu_slope_cancels_with_equalized_columns() -> None:
    rng = np.random.default_rng(3)
    dim = 9
    x = rng.standard_normal((5, dim))
    design = separating_design(x, random_measurement(dim, rng))
    model, rows = build(design, nn.LeakyReLU(0.2), extra_rows=3)
    dw, db = imprint_grad(model, x)
    assert_all_recovered(x, invert(dw, db, rows, negative_slope=0.2))
    # Ignoring the slope breaks only the last bin (it then carries 0.2 of every record).
    recs = invert(dw, db, rows)
    dist, _ = vector_distances(x, stack(recs), 1.0)
    assert exact_recoveries(dist) == len(x) - 1


def test_images_recovered_with_mean_brightness_measurement() -> None:
    rng = np.random.default_rng(4)
    images = rng.random((4, 1, 12, 12))
    flat = images.reshape(4, -1)
    design = separating_design(flat, mean_brightness_measurement(flat.shape[1]))
    model, rows = build(design, nn.ReLU())
    dw, db = imprint_grad(model, flat)
    dist, idx = image_distances(images, stack(invert(dw, db, rows)))
    assert dist.max() < 1e-6
    assert sorted(idx.tolist()) == [0, 1, 2, 3]


def _alone(design: ImprintDesign, x: np.ndarray) -> np.ndarray:
    """Mask of the records alone in their bin."""
    bins_of = design.assign(x)
    return np.bincount(bins_of, minlength=design.bins)[bins_of] == 1


def _variance_of_singletons(n: int, k: int) -> float:
    """Exact variance of the number of records alone in their bin (n records, k equal bins)."""
    mean = expected_exact_recoveries(n, k)
    pairs = n * (n - 1) * (1 - 1 / k) * (1 - 2 / k) ** (n - 2) if n >= 2 else 0.0  # E[X(X-1)]
    return pairs + mean - mean**2


@pytest.mark.parametrize("batch", [8, 64])
@pytest.mark.parametrize("bins", [10, 128])
def test_mean_exact_recoveries_match_formula(batch: int, bins: int) -> None:
    """Over many random batches the mean count of exact recoveries is n (1 - 1/K)^(n-1) (records alone).

    Records are N(0, I), so h = <v, x> is N(0, 1) for a unit v; thresholds are calibrated on separate
    auxiliary draws. The tolerance is 4 standard errors of the mean under the exact variance of the
    singleton count (bins estimated from 20000 auxiliary draws shift the mean only to second order).
    """
    rng = np.random.default_rng(100 + batch + bins)
    dim, repeats = 6, 150
    design = calibrate(rng.standard_normal((20000, dim)), random_measurement(dim, rng), bins)
    model, rows = build(design, nn.ReLU(), seed=batch + bins)
    counts = []
    for _ in range(repeats):
        x = rng.standard_normal((batch, dim))
        dw, db = imprint_grad(model, x)
        dist, _ = vector_distances(x, stack(invert(dw, db, rows, rel_tol=1e-9), dim), 1.0)
        found = exact_recoveries(dist, tol=1e-3)
        alone = _alone(design, x)
        # Every record alone in its bin is recovered. Rarely a crowded bin also passes: its g-weighted
        # average is within 1e-3 of a record whose |g| dwarfs its bin-mates' (seen here at n = 64, K = 128).
        assert np.all(dist[alone] < 1e-3)
        assert found - int(alone.sum()) <= 3
        counts.append(found)
    expected = expected_exact_recoveries(batch, bins)
    tolerance = 4 * math.sqrt(_variance_of_singletons(batch, bins) / repeats)
    assert abs(np.mean(counts) - expected) < tolerance, (np.mean(counts), expected, tolerance)


def test_empty_bins_give_no_reconstruction() -> None:
    rng = np.random.default_rng(5)
    dim, bins = 8, 12
    design = calibrate(rng.standard_normal((3000, dim)), random_measurement(dim, rng), bins)
    model, rows = build(design, nn.ReLU())
    x = rng.standard_normal((3, dim))
    dw, db = imprint_grad(model, x)
    recs = invert(dw, db, rows)
    assert sorted(r.bin for r in recs) == sorted(set(design.assign(x).tolist()))
    assert all(r.mass > 0 for r in recs)
    assert invert(np.zeros((bins, dim)), np.zeros(bins)) == []


def test_absolute_noise_floor_skips_weak_bins() -> None:
    dw = np.array([[3.0, 3.0], [2.0, 2.0], [2.0, 2.0], [0.0, 0.0]])
    db = np.array([3.0, 1.0, 0.3, 0.0])
    assert [r.bin for r in invert(dw, db)] == [0, 1, 2]
    assert [r.bin for r in invert(dw, db, min_mass=0.5)] == [0, 1]
    crowded = invert(dw, db)[0]
    assert np.allclose(crowded.values, [0.5, 0.5]) and crowded.mass == pytest.approx(2.0)


@pytest.mark.parametrize("distribution", ["gaussian", "empirical", "laplace"])
def test_calibration_puts_equal_mass_in_each_bin(distribution: str) -> None:
    rng = np.random.default_rng(6)
    dim, bins, n = 5, 10, 40000
    v = random_measurement(dim, rng)

    def draw() -> np.ndarray:
        """Gaussian records; for "laplace" their measurement replaced by a Laplace draw (h ~ Laplace)."""
        z = rng.standard_normal((n, dim))
        if distribution == "laplace":
            z += np.outer(rng.laplace(size=n) - z @ v, v)
        return z

    aux = draw()
    design = calibrate(aux, v, bins, distribution)
    assert np.all(np.diff(design.thresholds) > 0)
    for data in (aux, draw()):
        bins_of = design.assign(data)
        assert bins_of.min() >= 0  # row 0 fires for every record
        share = np.bincount(bins_of, minlength=bins) / n
        assert np.abs(share - 1 / bins).max() < 0.012, share


def test_design_rows_and_planting() -> None:
    v = np.array([0.6, 0.8])
    design = ImprintDesign(v, np.array([-5.0, 0.0, 1.0]), scale=2.0)
    w, b = imprint_rows(design)
    assert np.allclose(w, [[1.2, 1.6]] * 3) and np.allclose(b, [10.0, 0.0, -2.0])
    weight, bias = np.zeros((5, 2), dtype=np.float32), np.ones(5, dtype=np.float32)
    w2, b2 = plant(weight, bias, [4, 0, 2], design)
    assert w2.dtype == np.float32 and np.all(weight == 0)  # a copy
    assert np.allclose(b2, [0.0, 1.0, -2.0, 1.0, 10.0])
    nxt = np.arange(15.0).reshape(3, 5)
    eq = equalize_columns(nxt, [4, 0, 2])
    assert np.allclose(eq[:, [0, 2, 4]], nxt[:, [4]]) and np.allclose(eq[:, [1, 3]], nxt[:, [1, 3]])
    with pytest.raises(ValueError):
        ImprintDesign(v, np.array([1.0, 0.0]))
    with pytest.raises(ValueError):
        plant(weight, bias, [0, 0, 1], design)
    with pytest.raises(ValueError):
        calibrate(np.ones((10, 2)), v, 4)
    assert np.linalg.norm(random_measurement(7, np.random.default_rng(0))) == pytest.approx(1.0)
    assert np.linalg.norm(mean_brightness_measurement(7)) == pytest.approx(1.0)


def test_noisy_gradients_do_not_give_exact_recoveries() -> None:
    """Gaussian noise on the gradient (as DP-SGD adds) leaves ratios of noise: far from every record."""
    rng = np.random.default_rng(7)
    dim, bins = 16, 32
    design = calibrate(rng.standard_normal((5000, dim)), random_measurement(dim, rng), bins)
    model, rows = build(design, nn.ReLU())
    x = rng.standard_normal((8, dim))
    dw, db = imprint_grad(model, x)
    sd = float(np.abs(db).max())
    recs = invert(dw + rng.normal(0, sd, dw.shape), db + rng.normal(0, sd, db.shape), rows)
    assert len(recs) == bins  # noise makes every bin look occupied
    dist, _ = vector_distances(x, stack(recs), 1.0)
    assert exact_recoveries(dist) == 0
    assert np.median(dist) > 0.5


def test_expected_counts() -> None:
    assert expected_exact_recoveries(1, 10) == 1.0
    assert expected_exact_recoveries(64, 128) == pytest.approx(64 * (127 / 128) ** 63)
    assert expected_exact_recoveries(0, 10) == 0.0
    # With rate 1 every record is in the batch.
    assert expected_exact_recoveries_poisson(50, 1.0, 16) == pytest.approx(expected_exact_recoveries(50, 16))
    # Monte Carlo check of the Poisson formula on bins alone.
    rng = np.random.default_rng(8)
    n, q, k, reps = 200, 0.05, 16, 4000
    found = []
    for _ in range(reps):
        bins_of = rng.integers(0, k, size=int(rng.binomial(n, q)))
        found.append(int(np.sum(np.bincount(bins_of, minlength=k) == 1)))
    assert np.mean(found) == pytest.approx(expected_exact_recoveries_poisson(n, q, k), abs=0.15)
