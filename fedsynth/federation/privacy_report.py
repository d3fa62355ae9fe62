"""privacy.json: every hospital's epsilon, recomputed from the ledger it reported, with what it means.

The server builds this document from what hospitals sent (their full ledgers and the plans they
ran), never from their disks. For each hospital it states the neighbouring relation, how the record
count was treated, the clipping norm, the accountant and delta, and the full mechanism history;
epsilon is recomputed from that history here, never copied from anywhere. A simulation may add
*other releases on the same patients* (the centralized baseline): their events are composed into
the same history, so the reported epsilon covers everything released about those records.

The top level carries the run's privacy guarantee in words (:mod:`fedsynth.privacy.label`), the
hospitals that refused and why, and ``declared_releases``: every non-DP fact the run's outputs
contain, with where it appears and on what basis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedsynth.data.records import Schema
from fedsynth.models.gaussian import GAUSSIAN_PHASES
from fedsynth.privacy.accounting import MechanismEvent
from fedsynth.privacy.label import privacy_guarantee
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.privacy.randomness import SecureRandomness

MECHANISM = (
    "DP-SGD with Poisson sampling on every network that touches real records (autoencoder; "
    "discriminator with each record's real and fake rows clipped together as one contribution); "
    "the generator is post-processing"
)

GAUSSIAN_MECHANISM = (
    "Gaussian mechanism on the sums of the Gaussian latent model (image-mean, image-basis, "
    "latent-moments): every record contributes a vector of norm at most sqrt(share) of its release, "
    "clipped after the public centres and basis are applied; the model is post-processing of the sums"
)


def mechanism_of(events: list[MechanismEvent]) -> tuple[str, str]:
    """Short name and description of the mechanisms a history ran."""
    gaussian = {e.phase in GAUSSIAN_PHASES for e in events}
    if gaussian == {True}:
        return "Gaussian mechanism", GAUSSIAN_MECHANISM
    if gaussian == {True, False}:
        return "DP-SGD + Gaussian mechanism", f"{MECHANISM}; {GAUSSIAN_MECHANISM}"
    return "DP-SGD", MECHANISM


@dataclass
class HospitalPrivacy:
    """What the server knows of one hospital's privacy: its reported ledger and plan, plus events of
    other releases on the same patients (simulation only)."""

    ledger: PrivacyLedger
    plan: dict = field(default_factory=dict)
    other_releases: list[MechanismEvent] = field(default_factory=list)

    def combined(self) -> PrivacyLedger:
        return PrivacyLedger(self.ledger.delta, self.ledger.accountant, [*self.ledger.events, *self.other_releases])


def declared_releases(schema: Schema, hospitals: dict[int, HospitalPrivacy]) -> list[dict]:
    """The non-DP facts a run's outputs carry that the server can see."""
    out = []
    public_counts = sorted(h for h, p in hospitals.items() if isinstance(p.plan.get("record_count"), int))
    if public_counts:
        out.append(
            {
                "what": f"number of records of hospitals {public_counts}",
                "where": "every reply, metrics.jsonl (num_examples), privacy.json (record_count, sample_rate)",
                "basis": "declared public by each site's policy (record_count = public); "
                "their epsilons are stated under replace-one neighbours",
            }
        )
    for part in schema.inferred_from_data():
        out.append(
            {
                "what": part,
                "where": "schema.json, model/model.json, synthetic/",
                "basis": "inferred from patient data when the data set was prepared (not DP, not declared)",
            }
        )
    out.append(
        {
            "what": "mechanism parameters: noise multiplier, sample rate, clipping norm, steps per round",
            "where": "privacy.json, every reply",
            "basis": "public by design (they do not depend on records when the record count is private)",
        }
    )
    return out


def privacy_document(
    hospitals: dict[int, HospitalPrivacy],
    schema: Schema,
    refusals: dict[int, list[dict]] | None = None,
    extra_releases: list[dict] | None = None,
) -> dict:
    """The content of privacy.json (see the module docstring).

    Hospitals whose history is empty (they never trained) are listed under ``refusals`` or
    ``never_trained`` instead of ``hospitals``.
    """
    entries: dict[str, dict] = {}
    never_trained: list[int] = []
    reproducible = False
    for hid in sorted(hospitals):
        info = hospitals[hid]
        combined = info.combined()
        if not combined.events:
            never_trained.append(hid)
            continue
        reproducible = reproducible or bool(info.plan.get("reproducible_noise"))
        federation_only = info.ledger.epsilon() if info.ledger.private else None
        entries[str(hid)] = {
            "delta": combined.delta,
            "epsilon": combined.epsilon() if combined.private else None,
            "epsilon_federation_only": federation_only if info.other_releases else None,
            "accountant": combined.accountant,
            "private": combined.private,
            "neighbouring_relation": combined.relation,
            "record_count": info.plan.get("record_count", "unknown"),
            "max_grad_norm": info.plan.get("max_grad_norm"),
            "noise_multiplier": info.plan.get("noise_multiplier"),
            "sample_rate": info.plan.get("sample_rate"),
            "run_budget": info.plan.get("run_budget"),
            "lifetime_budget": info.plan.get("lifetime_budget"),
            "reproducible_noise": bool(info.plan.get("reproducible_noise")),
            "history": [e.to_dict() for e in combined.events],
            "other_releases": [e.to_dict() for e in info.other_releases],
        }
    private = bool(entries) and all(h["private"] for h in entries.values())
    epsilons = [h["epsilon"] for h in entries.values() if h["epsilon"] is not None]
    relations = sorted({h["neighbouring_relation"] for h in entries.values()})
    relation = relations[0] if len(relations) == 1 else "replace-one" if relations else "add-remove"
    max_delta = max((h["delta"] for h in entries.values()), default=None)
    name, description = mechanism_of([e for h in hospitals.values() for e in h.combined().events])
    guarantee = privacy_guarantee(
        private, max(epsilons) if epsilons and private else None, max_delta, relation, reproducible, name
    )
    return {
        "private": private,
        "label": guarantee.label,
        "guarantee": guarantee.to_dict(),
        "neighbouring_relation": relation,
        "reproducible_noise": reproducible,
        "randomness": "seeded (reproducible study; NOT private against the seed's holder)"
        if reproducible
        else SecureRandomness.description,
        "mechanism": description,
        "conditioning_labels": "sampled uniformly (no access to real label counts)",
        "tabular_bounds": "public"
        if schema.bounds_source == "public"
        else "data: numeric bounds fitted on raw data, NOT covered by the DP guarantee",
        "declared_releases": declared_releases(schema, hospitals) + list(extra_releases or []),
        "refusals": {str(h): r for h, r in sorted((refusals or {}).items())},
        "never_trained": never_trained,
        "hospitals": entries,
    }


def hospitals_from_document(document: dict) -> dict[int, HospitalPrivacy]:
    """Read back what :func:`privacy_document` wrote (for a simulation that adds releases)."""
    out = {}
    for hid, h in document.get("hospitals", {}).items():
        others = [MechanismEvent.from_dict(e) for e in h.get("other_releases", [])]
        own = [MechanismEvent.from_dict(e) for e in h["history"]][: len(h["history"]) - len(others)]
        plan = {k: h.get(k) for k in ("record_count", "max_grad_norm", "noise_multiplier", "sample_rate")}
        plan.update({"run_budget": h.get("run_budget"), "lifetime_budget": h.get("lifetime_budget")})
        plan["reproducible_noise"] = h.get("reproducible_noise", False)
        out[int(hid)] = HospitalPrivacy(PrivacyLedger(float(h["delta"]), h["accountant"], own), plan, others)
    return out
