"""Aggregated Model Performance: the federated generator against a centralized one.

The centralized generator is trained by one hospital holding the pooled records of all hospitals,
with the same model, rounds, local steps, batch size and privacy budget (target epsilon, delta),
then scored with the same TSTR protocol on the same held-out real split. AMP is the ratio of the
federated TSTR MCC to the centralized one (and the difference, which stays defined near 0).
"""

from __future__ import annotations

from fedsynth.config.schema import RunConfig
from fedsynth.data.records import Dataset
from fedsynth.evaluation.utility import train_on_test_on
from fedsynth.hospital.hospital import Hospital, resolve_device
from fedsynth.models.generator import build_generator
from fedsynth.protocol import RoundInstruction
from fedsynth.synthesis import synthesize


def centralized_tstr(config: RunConfig, pooled: Dataset, test: Dataset) -> dict:
    """Train the generator on ``pooled`` in one place under the same budget; TSTR on ``test``."""
    hospital = Hospital(0, pooled, config, resolve_device(config.simulation.device))
    start = build_generator(pooled.schema, config.model, config.seed).weights()
    for server_round in range(1, config.train.num_rounds + 1):
        weights = start if server_round == 1 else None
        hospital.train_round(RoundInstruction(server_round, config.train.phase_of_round(server_round), weights=weights))
    synthetic = synthesize(hospital.model, config.evaluation.num_synthetic, seed=config.seed)
    tstr = train_on_test_on(synthetic, test, seed=config.seed)
    tstr["epsilon"] = hospital.ledger.epsilon()
    return tstr


def aggregated_model_performance(federated_mcc: float | None, centralized_mcc: float | None) -> dict:
    """AMP as ratio and difference of TSTR MCCs (None where undefined)."""
    if federated_mcc is None or centralized_mcc is None:
        return {"ratio": None, "difference": None}
    ratio = federated_mcc / centralized_mcc if abs(centralized_mcc) > 1e-9 else None
    return {"ratio": ratio, "difference": federated_mcc - centralized_mcc}
