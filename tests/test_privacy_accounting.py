"""The ledger's epsilon against an independent accountant (Google's dp-accounting), calibration,
and refusal past the budget."""

from __future__ import annotations

import math

import dp_accounting as dpa
import pytest

from fedsynth.privacy.accounting import MechanismEvent, calibrate_noise_multiplier, compute_epsilon
from fedsynth.privacy.ledger import PrivacyLedger

DELTA = 1e-5


def independent_epsilon(events: list[MechanismEvent], delta: float, kind: str) -> float:
    acc = dpa.rdp.RdpAccountant() if kind == "rdp" else dpa.pld.PLDAccountant()
    for e in events:
        acc.compose(
            dpa.SelfComposedDpEvent(
                dpa.PoissonSampledDpEvent(e.sample_rate, dpa.GaussianDpEvent(e.noise_multiplier)), e.steps
            )
        )
    return acc.get_epsilon(delta)


HISTORIES = [
    [MechanismEvent("autoencoder", 1, 1.1, 0.05, 100)],
    [MechanismEvent("autoencoder", r, 0.9, 0.1, 25) for r in range(1, 3)]
    + [MechanismEvent("discriminator", r, 0.9, 0.1, 40) for r in range(3, 5)],
    [MechanismEvent("autoencoder", 1, 2.0, 0.2, 10), MechanismEvent("discriminator", 2, 0.7, 0.02, 300)],
]


@pytest.mark.parametrize("events", HISTORIES)
def test_rdp_ledger_matches_independent_rdp(events: list[MechanismEvent]) -> None:
    ledger = PrivacyLedger(delta=DELTA, accountant="rdp")
    for e in events:
        ledger.record(e)
    ours = ledger.epsilon()
    theirs = independent_epsilon(events, DELTA, "rdp")
    assert ours == pytest.approx(theirs, rel=0.02)
    # Never below the tighter PLD bound of the same history.
    assert ours >= 0.98 * independent_epsilon(events, DELTA, "pld")


@pytest.mark.parametrize("events", HISTORIES)
def test_prv_ledger_between_pld_and_rdp(events: list[MechanismEvent]) -> None:
    ours = compute_epsilon(events, DELTA, "prv")
    assert ours is not None
    assert 0.98 * independent_epsilon(events, DELTA, "pld") <= ours <= 1.02 * independent_epsilon(events, DELTA, "rdp")


def test_composition_over_rounds_grows_and_is_order_free() -> None:
    one = compute_epsilon(HISTORIES[1][:2], DELTA)
    full = compute_epsilon(HISTORIES[1], DELTA)
    assert one is not None and full is not None and full > one
    assert compute_epsilon(list(reversed(HISTORIES[1])), DELTA) == pytest.approx(full, rel=1e-9)


def test_non_private_history_has_no_epsilon() -> None:
    events = [MechanismEvent("autoencoder", 1, 0.0, 0.1, 10)]
    assert compute_epsilon(events, DELTA) is None
    assert compute_epsilon([], DELTA) == 0.0


def test_calibration_hits_target_from_above() -> None:
    planned = [MechanismEvent("autoencoder", r, 1.0, 0.1, 30) for r in range(1, 9)]
    for target in (1.0, 8.0, 32.0):
        sigma = calibrate_noise_multiplier(planned, target, DELTA)
        at = compute_epsilon([MechanismEvent(e.phase, e.round, sigma, e.sample_rate, e.steps) for e in planned], DELTA)
        assert at is not None and at <= target
        assert at >= 0.95 * target  # not needlessly noisy
        louder = independent_epsilon(
            [MechanismEvent(e.phase, e.round, sigma * 0.97, e.sample_rate, e.steps) for e in planned], DELTA, "rdp"
        )
        assert louder > target * 0.999 or math.isclose(louder, target, rel_tol=0.02)


def test_ledger_round_trips_and_never_rewrites() -> None:
    ledger = PrivacyLedger(delta=DELTA)
    for e in HISTORIES[2]:
        ledger.record(e)
    copy = PrivacyLedger.from_dict(ledger.to_dict())
    assert copy.events == ledger.events and copy.epsilon() == ledger.epsilon()
    with pytest.raises(ValueError):
        ledger.record(MechanismEvent("x", 3, 1.0, 0.1, -1))


def test_memoized_rdp_composition_equals_opacus_rdp_accountant_exactly() -> None:
    """fedsynth composes RDP from memoized one-step vectors; the epsilon must be Opacus' own,
    bit for bit, for mixed histories (several noise levels, sample rates and step counts)."""
    import random
    import warnings

    from opacus.accountants import RDPAccountant

    from fedsynth.privacy.accounting import _rdp_epsilon

    rng = random.Random(7)
    for _ in range(25):
        history = tuple(
            (rng.choice([0.5, 0.9, 1.3, 2.7, 6.0]), rng.choice([0.005, 0.04, 0.3, 1.0]), rng.randint(1, 400))
            for _ in range(rng.randint(1, 5))
        )
        reference = RDPAccountant()
        reference.history = list(history)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Opacus: optimal order at the edge of its range
            assert _rdp_epsilon(history, 1e-5) == float(reference.get_epsilon(delta=1e-5)), history
