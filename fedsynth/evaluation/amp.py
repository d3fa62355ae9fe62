"""Aggregated Model Performance: the federated generator against a centralized one.

The centralized generator is trained by one site holding the pooled records of all hospitals, with
the same model, rounds, local steps and privacy request (see :mod:`fedsynth.simulation.audit`), then
scored with the same TSTR protocol on the same held-out real split. AMP is the ratio of the
federated TSTR MCC to the centralized one (and the difference, which stays defined near 0).
"""

from __future__ import annotations


def aggregated_model_performance(federated_mcc: float | None, centralized_mcc: float | None) -> dict:
    """AMP as ratio and difference of TSTR MCCs (None where undefined)."""
    if federated_mcc is None or centralized_mcc is None:
        return {"ratio": None, "difference": None}
    ratio = federated_mcc / centralized_mcc if abs(centralized_mcc) > 1e-9 else None
    return {"ratio": ratio, "difference": federated_mcc - centralized_mcc}
