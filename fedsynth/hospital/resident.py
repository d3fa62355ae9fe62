"""Hospitals kept resident in a process across rounds, re-synchronized from their stores.

A Flower ClientApp is a function called once per message, and in simulation any worker process
may serve any hospital. This cache keeps each hospital's models, optimizers, DP engines and data
in memory between rounds, and rebuilds a hospital from its saved state only when the state on disk
is not the one it holds (another process trained it, or the run resumed from an earlier round).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fedsynth.config.schema import RunConfig
from fedsynth.data import load_federation
from fedsynth.hospital.hospital import Hospital
from fedsynth.hospital.store import HospitalStore
from fedsynth.privacy.ledger import PrivacyLedger


@dataclass
class _Entry:
    hospital: Hospital
    config: RunConfig
    round: int | None  # the saved round the in-memory state equals (None: fresh)


class ResidentHospitals:
    """In-process cache of :class:`Hospital` objects keyed by their state directory."""

    def __init__(self) -> None:
        self._entries: dict[Path, _Entry] = {}

    def get(
        self, hospital_id: int, config: RunConfig, state_dir: Path, device: torch.device, server_round: int
    ) -> Hospital:
        """The hospital, in the state it had at the end of the newest round before ``server_round``.

        Its ledger is always the newest one on disk: work done in a round that the server later
        lost (crash, resume) stays counted, so epsilon is never under-reported.
        """
        store = HospitalStore(state_dir)
        start = store.latest_round(before=server_round)
        entry = self._entries.get(state_dir)
        if entry is not None and entry.config == config and entry.round == start:
            return entry.hospital
        data = load_federation(config.data, config.federation.num_hospitals, config.seed).hospitals[hospital_id]
        hospital = Hospital(hospital_id, data, config, device)
        if start is not None:
            hospital.load_state_dict(store.load(start))
        newest = store.latest_round()
        if newest is not None and newest != start:
            hospital.ledger = PrivacyLedger.from_dict(store.load(newest)["ledger"])
        self._entries[state_dir] = _Entry(hospital, config, start)
        return hospital

    def forget(self, state_dir: Path) -> None:
        """Drop the in-memory hospital (a crash); the next request restores it from its store."""
        self._entries.pop(state_dir, None)

    def finished(self, hospital: Hospital, state_dir: Path, server_round: int, extra: dict | None = None) -> None:
        """Persist the hospital after ``server_round`` (with ``extra`` entries, e.g. the reply it
        sent) and remember that memory equals that state."""
        HospitalStore(state_dir).save({**hospital.state_dict(), **(extra or {})}, server_round)
        entry = self._entries.get(state_dir)
        if entry is not None and entry.hospital is hospital:
            entry.round = server_round
