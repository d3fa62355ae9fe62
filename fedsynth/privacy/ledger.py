"""A hospital's privacy ledger: the append-only history of every DP mechanism it ran.

Epsilon is never stored on its own: it is recomputed from the full history with a real accountant
whenever it is asked for, so the ledger cannot drift from what was actually spent. The history
spans every run on the site's records (a patient's loss is cumulative); the neighbouring relation
it is stated under follows from its events (:func:`~fedsynth.privacy.accounting.relation_of`).
On a site's disk the ledger is kept by :mod:`fedsynth.hospital.ledger_file`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedsynth.privacy.accounting import (
    AccountantName,
    MechanismEvent,
    Relation,
    compute_epsilon,
    is_private,
    relation_of,
)


@dataclass
class PrivacyLedger:
    """Mechanism history of one hospital, over all phases and rounds, plus its accounting rules."""

    delta: float
    accountant: AccountantName = "rdp"
    events: list[MechanismEvent] = field(default_factory=list)

    def record(self, event: MechanismEvent) -> None:
        """Append one mechanism run; the history is never rewritten."""
        if event.steps < 0:
            raise ValueError(f"a mechanism event cannot have {event.steps} steps")
        self.events.append(event)

    @property
    def private(self) -> bool:
        return is_private(self.events)

    @property
    def relation(self) -> Relation:
        return relation_of(self.events)

    def of_run(self, run: str) -> PrivacyLedger:
        """The events of one run only (same accounting rules)."""
        return PrivacyLedger(self.delta, self.accountant, [e for e in self.events if e.run == run])

    def epsilon(self, delta: float | None = None) -> float | None:
        """Epsilon spent so far at ``delta`` (default: the ledger's delta); None if not private."""
        return compute_epsilon(self.events, self.delta if delta is None else delta, self.accountant)

    def epsilon_after(self, planned: list[MechanismEvent]) -> float | None:
        """Epsilon the hospital would have spent after also running ``planned``."""
        return compute_epsilon([*self.events, *planned], self.delta, self.accountant)

    def to_dict(self) -> dict:
        return {
            "delta": self.delta,
            "accountant": self.accountant,
            "neighbouring_relation": self.relation,
            "history": [e.to_dict() for e in self.events],
        }

    @classmethod
    def from_dict(cls, d: dict) -> PrivacyLedger:
        return cls(
            delta=float(d["delta"]),
            accountant=d.get("accountant", "rdp"),
            events=[MechanismEvent.from_dict(e) for e in d.get("history", [])],
        )
