"""Replies carry only the ledger events the server does not hold yet; the server rebuilds the rest.

A site's ledger is append-only and every reply used to carry all of it, so a reply's size grew by
one event (about 190 bytes of JSON) per round. Instead:

1. the coordinator tells each site, in every instruction, how many of its events it holds
   (``ledger_known``) and a digest of them (``ledger_digest``, :func:`history_digest`), from the
   ledger it last rebuilt for that site (restored from the server checkpoint on a resume);
2. the site (:func:`delta_of`, where the reply is encoded) sends only the events after those, with
   ``ledger_base`` = how many it left out, when its own first ``ledger_known`` events have that
   digest; otherwise (the server holds more than the site has, or a different history) it sends
   its whole ledger, ``ledger_base`` 0, exactly as before;
3. the coordinator (:func:`rebuild`) puts the held events back in front before anything reads the
   reply's ledger, so metrics, checkpoints and privacy.json see the site's full ledger.

A lost, late or refused reply changes nothing the server holds, so the next instruction simply
asks again from the older count. A stored reply re-sent to a resumed server is a full ledger, and
is encoded against the resumed server's count like any other. The end-of-run ledger query
(``Transport.ledgers``) always returns the full ledger.
"""

from __future__ import annotations

import hashlib
import json

from fedsynth.privacy.accounting import MechanismEvent
from fedsynth.privacy.ledger import PrivacyLedger


class LedgerDeltaError(ValueError):
    """A reply's ledger delta does not extend the ledger the server holds for that site."""


def history_digest(events: list[MechanismEvent]) -> str:
    """SHA-256 of the canonical JSON of ``events`` (site and server compute it the same way)."""
    text = json.dumps([e.to_dict() for e in events], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def mark_of(held: PrivacyLedger | None) -> tuple[int, str]:
    """``(ledger_known, ledger_digest)`` for an instruction, from the ledger the server holds."""
    if held is None or not held.events:
        return 0, ""
    return len(held.events), history_digest(held.events)


def delta_of(ledger: dict, known: int, digest: str) -> tuple[dict, int]:
    """The ledger dict to send and its ``ledger_base``: the events after the first ``known`` when
    those have ``digest``, else the whole ledger (base 0)."""
    history = ledger.get("history", []) if ledger else []
    if known <= 0 or known > len(history) or not digest:
        return ledger, 0
    if history_digest([MechanismEvent.from_dict(e) for e in history[:known]]) != digest:
        return ledger, 0
    return {**ledger, "history": history[known:]}, known


def rebuild(delta: dict, base: int, held: PrivacyLedger | None, hospital_id: int) -> dict:
    """The site's full ledger dict from a reply's ``delta`` and the ledger the server ``held``."""
    if base == 0:
        return delta
    have = len(held.events) if held is not None else 0
    if held is None or base > have:
        raise LedgerDeltaError(
            f"hospital {hospital_id}'s ledger delta starts after event {base}, "
            f"but the server holds {have} of its events"
        )
    return {**delta, "history": [e.to_dict() for e in held.events[:base]] + list(delta.get("history", []))}
