"""A hospital's privacy plan: sample rate, noise multiplier and budget, fixed before round 1.

In target-epsilon mode the noise multiplier is calibrated so that the hospital's *planned*
mechanism history (every round's phase and steps at its own sample rate) spends exactly its target
epsilon; hospitals with fewer records get a larger sample rate and therefore more noise.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsynth.config.schema import PrivacyConfig, TrainConfig
from fedsynth.privacy.accounting import MechanismEvent, calibrate_noise_multiplier

#: Ledger phase name of each training phase's private network.
PHASE_MECHANISM = {"autoencoder": "autoencoder", "gan": "discriminator"}


@dataclass(frozen=True)
class PrivacyPlan:
    private: bool
    sample_rate: float
    noise_multiplier: float
    max_grad_norm: float
    budget: float | None
    delta: float

    def event(self, phase: str, server_round: int, steps: int) -> MechanismEvent:
        """The ledger entry of ``steps`` DP-SGD steps of ``phase`` in ``server_round``."""
        return MechanismEvent(
            phase=PHASE_MECHANISM[phase],
            round=server_round,
            noise_multiplier=self.noise_multiplier if self.private else 0.0,
            sample_rate=self.sample_rate,
            steps=steps,
        )


def local_steps(train: TrainConfig, phase: str) -> int:
    return train.local_steps_autoencoder if phase == "autoencoder" else train.local_steps_gan


def planned_history(train: TrainConfig, sample_rate: float, noise_multiplier: float) -> list[MechanismEvent]:
    """Every mechanism event of a full run, in order, at one noise multiplier."""
    events = []
    for r in range(1, train.num_rounds + 1):
        phase = train.phase_of_round(r)
        events.append(
            MechanismEvent(PHASE_MECHANISM[phase], r, noise_multiplier, sample_rate, local_steps(train, phase))
        )
    return events


def make_privacy_plan(num_records: int, train: TrainConfig, privacy: PrivacyConfig) -> PrivacyPlan:
    """Derive the hospital's plan from its size and the run's training/privacy settings."""
    if num_records <= 0:
        raise ValueError("a hospital needs at least one record to plan its privacy budget")
    sample_rate = min(1.0, train.batch_size / num_records)
    if not privacy.enabled:
        return PrivacyPlan(False, sample_rate, 0.0, privacy.max_grad_norm, None, privacy.delta)
    sigma = privacy.noise_multiplier
    if sigma <= 0:
        sigma = calibrate_noise_multiplier(
            planned_history(train, sample_rate, 1.0), privacy.target_epsilon, privacy.delta, privacy.accountant
        )
    return PrivacyPlan(True, sample_rate, sigma, privacy.max_grad_norm, privacy.budget, privacy.delta)
