"""The hospital (site) side: its privacy plan, guardrails, ledger on disk, training and service."""

from fedsynth.hospital.hospital import Hospital, resolve_device
from fedsynth.hospital.plan import PrivacyPlan, resolve_plan
from fedsynth.hospital.service import HospitalService

__all__ = ["Hospital", "HospitalService", "PrivacyPlan", "resolve_device", "resolve_plan"]
