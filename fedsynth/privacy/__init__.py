"""Differential privacy: accounting (pure), the per-hospital ledger, DP-SGD networks."""

from fedsynth.privacy.accounting import MechanismEvent, calibrate_noise_multiplier, compute_epsilon, is_private
from fedsynth.privacy.ledger import PrivacyLedger

__all__ = ["MechanismEvent", "PrivacyLedger", "calibrate_noise_multiplier", "compute_epsilon", "is_private"]
