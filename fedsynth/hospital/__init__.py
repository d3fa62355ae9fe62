"""A hospital as a library object: state kept across rounds, one call per round."""

from fedsynth.hospital.hospital import Hospital, resolve_device
from fedsynth.hospital.plan import PrivacyPlan, make_privacy_plan

__all__ = ["Hospital", "PrivacyPlan", "make_privacy_plan", "resolve_device"]
