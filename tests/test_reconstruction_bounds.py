"""Reconstruction-robustness (ReRo) bounds: published values, limits, monotonicity, the ledger's
relations, and an independent cross-check of the numerical worst case with Google's dp-accounting.

Published values: "Bounding data reconstruction attacks with the hypothesis testing interpretation
of differential privacy" and "Generalised Likelihood Ratio Testing Adversaries through the
Differential Privacy Lens" (Kaissis et al.). Their noise multipliers are printed to two decimals,
so the comparisons use relative tolerances of a few percent.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from fedsynth.privacy.accounting import MechanismEvent
from fedsynth.privacy.reconstruction import (
    ReconstructionBounds,
    StepGroup,
    clt_bound,
    groups_from_events,
    reconstruction_bounds,
    relaxed_bound,
    worst_case_bound,
)

# 8112 records, batches of 2048 (Poisson), 300 steps; the candidate set is the training set.
N_RECORDS = 8112
Q_PAPER = 2048 / N_RECORDS
PRIOR_PAPER = 1 / N_RECORDS


def paper(sigma: float) -> list[StepGroup]:
    return [StepGroup(sigma, Q_PAPER, 300)]


def clt_case(sigma: float) -> list[StepGroup]:
    """10 000 records, sample rate 0.0256, 1953 steps (prior 1e-4)."""
    return [StepGroup(sigma, 0.0256, 1953)]


# (sigma, published worst case, published relaxed bound), in percent.
PAPER_VALUES = [(20.12, 0.028, 0.013), (3.18, 1.216, 0.043), (1.60, 22.2, 0.785), (1.18, 63.5, 6.9)]


@pytest.mark.parametrize(("sigma", "worst", "relaxed"), PAPER_VALUES)
def test_published_worst_case_and_relaxed_bounds(sigma: float, worst: float, relaxed: float) -> None:
    # Worst case: within 3% (we get 0.0283, 1.221, 22.33, 63.81). Relaxed: within 5% (we get
    # 0.0127, 0.0425, 0.759, 6.69; the chi-square power is a few percent below the published ones).
    assert 100 * worst_case_bound(paper(sigma), PRIOR_PAPER) == pytest.approx(worst, rel=0.03)
    assert 100 * relaxed_bound(paper(sigma), PRIOR_PAPER) == pytest.approx(relaxed, rel=0.05)


@pytest.mark.parametrize(
    ("sigma", "worst", "rel"),
    # 2.0 -> 0.0947% here and with dp-accounting (see the cross-check below); the published 0.10% is
    # 5.3% above, hence the wider tolerance for that one value.
    [(1.0, 1.3, 0.03), (0.5, 85.6, 0.03), (0.8, 5.8, 0.03), (2.0, 0.10, 0.06)],
)
def test_published_worst_case_many_steps(sigma: float, worst: float, rel: float) -> None:
    assert 100 * worst_case_bound(clt_case(sigma), 1e-4) == pytest.approx(worst, rel=rel)


def test_published_clt_value() -> None:
    assert 100 * clt_bound(clt_case(1.0), 1e-4) == pytest.approx(1.27, rel=0.01)


@pytest.mark.parametrize(
    ("sigma", "q", "steps", "prior"),
    [(1.0, 0.002, 20_000, 1e-3), (1.5, 0.001, 50_000, 1e-3), (2.0, 0.005, 10_000, 1e-3), (1.0, 0.004, 10_000, 1e-2)],
)
def test_clt_agrees_with_numerical_bound_for_many_small_steps(sigma: float, q: float, steps: int, prior: float) -> None:
    groups = [StepGroup(sigma, q, steps)]
    assert clt_bound(groups, prior) == pytest.approx(worst_case_bound(groups, prior), rel=0.03)


def test_clt_is_far_off_with_few_large_steps() -> None:
    # The reason the numerical bound is reported: at q = 0.25, sigma = 1.18 the CLT says 79%, not 64%.
    assert clt_bound(paper(1.18), PRIOR_PAPER) > 1.2 * worst_case_bound(paper(1.18), PRIOR_PAPER)


@pytest.mark.parametrize(("sigma", "steps"), [(1.0, 1), (0.3, 1), (3.0, 10), (10.0, 100)])
def test_full_batch_matches_gaussian_trade_off_exactly(sigma: float, steps: int) -> None:
    # q = 1: T Gaussian steps are one Gaussian mechanism with mu = sqrt(T)/sigma, whose power at
    # type-I error kappa is Phi(PhiInv(kappa) + mu) exactly.
    exact = float(special.ndtr(special.ndtri(1e-4) + math.sqrt(steps) / sigma))
    assert worst_case_bound([StepGroup(sigma, 1.0, steps)], 1e-4) == pytest.approx(exact, rel=1e-5)


def test_numerical_bound_is_converged_in_the_grid() -> None:
    for groups, prior in [(paper(1.6), PRIOR_PAPER), (clt_case(0.8), 1e-4)]:
        default = worst_case_bound(groups, prior)
        finer = worst_case_bound(groups, prior, grid_points=1 << 19)
        coarser = worst_case_bound(groups, prior, grid_points=1 << 12)
        assert default == pytest.approx(finer, rel=1e-4)
        # The discretization is pessimistic: a coarse grid can only overstate the bound.
        assert coarser >= finer * (1 - 1e-9)


def test_split_groups_compose_like_one_group() -> None:
    whole = worst_case_bound([StepGroup(1.2, 0.05, 600)], 1e-3)
    split = worst_case_bound([StepGroup(1.2, 0.05, 200), StepGroup(1.2, 0.05, 400)], 1e-3)
    assert split == pytest.approx(whole, rel=1e-4)


def test_sensitivity_is_the_same_as_less_noise() -> None:
    prior = 1e-3
    doubled = [StepGroup(2.0, 0.05, 500, sensitivity=2.0)]
    halved = [StepGroup(1.0, 0.05, 500)]
    for bound in (worst_case_bound, clt_bound, relaxed_bound):
        assert bound(doubled, prior) == pytest.approx(bound(halved, prior), rel=1e-6)


def test_mixed_groups_lie_between_their_parts() -> None:
    prior = 1e-4
    a, b = StepGroup(0.9, 0.01, 2000), StepGroup(2.0, 0.1, 500, sensitivity=2.0)
    both = worst_case_bound([a, b], prior)
    assert max(worst_case_bound([a], prior), worst_case_bound([b], prior)) < both < 1.0


@pytest.mark.parametrize("bound", [worst_case_bound, clt_bound, relaxed_bound])
def test_bounds_grow_with_steps_and_shrink_with_noise(bound) -> None:
    prior = 1e-3
    by_steps = [bound([StepGroup(1.5, 0.05, t)], prior) for t in (10, 100, 1000, 3000)]
    by_sigma = [bound([StepGroup(s, 0.05, 500)], prior) for s in (4.0, 2.0, 1.0, 0.7)]
    for values in (by_steps, by_sigma):
        assert all(np.diff(values) > 0), values
        assert values[0] >= prior
        assert values[-1] <= 1.0


@pytest.mark.parametrize("bound", [worst_case_bound, clt_bound, relaxed_bound])
def test_bounds_are_at_least_the_prior(bound) -> None:
    for prior in (1e-5, 1e-3, 0.1, 0.5):
        assert bound([StepGroup(30.0, 0.01, 10)], prior) >= prior


def test_worst_case_dominates_relaxed() -> None:
    for sigma in (20.12, 3.18, 1.6, 1.18):
        assert worst_case_bound(paper(sigma), PRIOR_PAPER) > relaxed_bound(paper(sigma), PRIOR_PAPER)


@pytest.mark.parametrize("bound", [worst_case_bound, clt_bound, relaxed_bound])
def test_no_noise_means_no_bound(bound) -> None:
    assert bound([StepGroup(0.0, 0.01, 1)], 1e-4) == 1.0
    assert bound([StepGroup(5.0, 0.01, 100), StepGroup(0.0, 0.01, 1)], 1e-4) == 1.0


def test_nothing_released_leaves_the_prior() -> None:
    assert worst_case_bound([], 0.01) == 0.01
    assert worst_case_bound([StepGroup(1.0, 0.0, 100)], 0.01) == 0.01
    assert relaxed_bound([StepGroup(1.0, 0.5, 0)], 0.01) == 0.01
    assert clt_bound([], 0.01) == pytest.approx(0.01)


@pytest.mark.parametrize("prior", [0.0, 1.0, -0.1, 2.0])
def test_prior_must_be_a_probability_strictly_inside_0_1(prior: float) -> None:
    for bound in (worst_case_bound, clt_bound, relaxed_bound):
        with pytest.raises(ValueError, match="prior"):
            bound([StepGroup(1.0, 0.1, 10)], prior)


def test_step_group_validation() -> None:
    for bad in [dict(noise_multiplier=-1.0), dict(sample_rate=1.5), dict(steps=-1), dict(sensitivity=0.0)]:
        with pytest.raises(ValueError, match="step group"):
            StepGroup(**{"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 1, **bad})


def test_groups_from_events_merges_equal_mechanisms() -> None:
    events = [
        MechanismEvent("autoencoder", 1, 1.1, 0.05, 100),
        MechanismEvent("gan", 1, 0.9, 0.05, 40),
        MechanismEvent("autoencoder", 2, 1.1, 0.05, 60),
        MechanismEvent("gan", 2, 0.9, 0.05, 0),
        MechanismEvent("gan", 3, 0.9, 0.05, 10, sensitivity=3.0),
    ]
    groups = groups_from_events(events)
    assert sorted(groups, key=lambda g: (g.noise_multiplier, g.sensitivity)) == [
        StepGroup(0.9, 0.05, 40),
        StepGroup(0.9, 0.05, 10, sensitivity=3.0),
        StepGroup(1.1, 0.05, 160),
    ]


def test_replace_one_doubles_the_sensitivity_of_the_whole_history() -> None:
    replace_one = [MechanismEvent("gan", 1, 1.0, 0.1, 50, relation="replace-one")]
    assert groups_from_events(replace_one) == [StepGroup(1.0, 0.1, 50, sensitivity=2.0)]
    # The ledger states a mixed history under replace-one: every event is doubled.
    mixed = [MechanismEvent("autoencoder", 1, 1.0, 0.1, 30), *replace_one]
    assert groups_from_events(mixed) == [StepGroup(1.0, 0.1, 80, sensitivity=2.0)]
    prior = 1e-3
    assert reconstruction_bounds(replace_one, prior).worst_case == pytest.approx(
        worst_case_bound([StepGroup(0.5, 0.1, 50)], prior), rel=1e-6
    )


def test_reconstruction_bounds_of_a_history() -> None:
    events = [MechanismEvent("autoencoder", r, 1.6, Q_PAPER, 100) for r in (1, 2, 3)]
    result = reconstruction_bounds(events, PRIOR_PAPER)
    assert isinstance(result, ReconstructionBounds)
    assert result.steps == 300
    assert result.worst_case == pytest.approx(worst_case_bound(paper(1.6), PRIOR_PAPER), rel=1e-9)
    assert result.worst_case_clt == pytest.approx(clt_bound(paper(1.6), PRIOR_PAPER))
    assert result.relaxed == pytest.approx(relaxed_bound(paper(1.6), PRIOR_PAPER))
    assert result.to_dict() == {
        "prior": PRIOR_PAPER,
        "worst_case": result.worst_case,
        "worst_case_clt": result.worst_case_clt,
        "relaxed": result.relaxed,
        "steps": 300,
    }
    noiseless = reconstruction_bounds([*events, MechanismEvent("gan", 1, 0.0, 0.1, 5)], PRIOR_PAPER)
    assert (noiseless.worst_case, noiseless.worst_case_clt, noiseless.relaxed) == (1.0, 1.0, 1.0)


def independent_worst_case(sigma: float, q: float, steps: int, prior: float) -> float:
    """Power at type-I error ``prior`` from dp-accounting's (pessimistic) privacy loss distribution:
    its pmf of the loss under the upper distribution, the lower one's as pmf * exp(-loss)."""
    pld_module = pytest.importorskip("dp_accounting.pld.privacy_loss_distribution")
    pld = pld_module.from_gaussian_mechanism(
        standard_deviation=sigma,
        sensitivity=1,
        sampling_prob=q,
        pessimistic_estimate=True,
        value_discretization_interval=1e-3,
    ).self_compose(steps)
    pmf = pld._pmf_remove.to_dense_pmf()  # the library exposes no public accessor for the pmf
    losses = (pmf._lower_loss + np.arange(pmf._probs.size)) * pmf._discretization
    upper_tail = pmf._infinity_mass + np.concatenate(([0.0], np.cumsum(pmf._probs[::-1])))
    lower_tail = np.concatenate(([0.0], np.cumsum((pmf._probs * np.exp(-losses))[::-1])))
    return float(np.interp(prior, lower_tail, upper_tail))


@pytest.mark.parametrize(
    ("sigma", "q", "steps", "prior"),
    [
        (20.12, Q_PAPER, 300, PRIOR_PAPER),
        (1.18, Q_PAPER, 300, PRIOR_PAPER),
        (1.0, 0.0256, 1953, 1e-4),
        (2.0, 0.0256, 1953, 1e-4),
        (0.5, 0.0256, 1953, 1e-4),
    ],
)
def test_worst_case_against_dp_accounting(sigma: float, q: float, steps: int, prior: float) -> None:
    expected = independent_worst_case(sigma, q, steps, prior)
    assert worst_case_bound([StepGroup(sigma, q, steps)], prior) == pytest.approx(expected, rel=0.005)
