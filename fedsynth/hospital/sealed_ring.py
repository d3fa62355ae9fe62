"""A hospital's end of a sealed ring: what it seals, what it opens, and what it refuses.

In a sealed ring (``federation.ring_sealed``) a hospital never hands the server its trained model
in plaintext during the rounds. After training it seals its *full* model (numpy ``savez`` bytes)
for each neighbour its site file pins (:mod:`fedsynth.site.ring`); the server relays the blob
addressed to the next hospital, which opens it with its own ring key and merges it exactly as a
plaintext ring merges a relayed model. The seal's context binds the run id and the round in which
the sender trained the model, so a blob does not open in another run, and a blob relabelled with
another round does not open at all; a blob older than the newest one the receiver already took
from that sender is refused as a replay.

The rules here are the site's, from its own site file; the job only *asks* for sealing.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from fedsynth.consortium.sealing import load_ring_private, open_sealed, seal
from fedsynth.errors import FedsynthError
from fedsynth.protocol import RELEASE, Arrays, Job, RoundInstruction, SealedModel
from fedsynth.site.config import Site
from fedsynth.site.ring import RingSealing


class ModelArchiveError(FedsynthError):
    """An opened payload is not a model archive (numpy ``savez`` of named arrays)."""


def ring_context(run_id: str, sender_round: int) -> bytes:
    """What a ring seal is bound to: this run, and the round in which the sender trained the model."""
    return f"fedsynth ring model;run={run_id};round={int(sender_round)}".encode()


def model_to_bytes(weights: Arrays) -> bytes:
    """A model as numpy ``savez`` bytes (named arrays, no pickled objects)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.ascontiguousarray(value) for name, value in weights.items()})
    return buffer.getvalue()


def model_from_bytes(data: bytes) -> Arrays:
    """The named arrays of :func:`model_to_bytes` (loaded with ``allow_pickle=False``)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ModelArchiveError(f"not a model archive ({type(e).__name__}: {e})") from e


class RingSealer:
    """One hospital's ring key and pinned neighbours: seals its model for them, opens theirs."""

    def __init__(self, hospital_id: int, key: X25519PrivateKey, peers: dict[int, X25519PublicKey]) -> None:
        self.hospital_id = hospital_id
        self.key = key
        self.peers = dict(peers)

    @classmethod
    def from_site(cls, site: Site) -> RingSealer:
        """The sealer of a site file's ``[ring]`` table; errors name the key file."""
        path: Path | None = site.ring_key_path
        if path is None:
            raise FedsynthError("the site has no ring key (ring.key in its site file)")
        return cls(site.hospital_id, load_ring_private(path), site.config.ring.pinned())

    def seal_model(self, weights: Arrays, run_id: str, server_round: int) -> dict[int, bytes]:
        """The model sealed for every pinned neighbour, by receiver id."""
        payload = model_to_bytes(weights)
        context = ring_context(run_id, server_round)
        return {
            peer: seal(
                payload,
                sender_id=self.hospital_id,
                sender_key=self.key,
                receiver_id=peer,
                receiver_public=public,
                context=context,
            )
            for peer, public in sorted(self.peers.items())
            if peer != self.hospital_id
        }

    def open_model(self, sealed: SealedModel, run_id: str) -> Arrays:
        """The peer model in ``sealed``; :class:`~fedsynth.consortium.sealing.SealError` when the
        blob is altered, not from the pinned sender, not for this hospital or from another round or
        run, :class:`ModelArchiveError` when what it holds is not a model."""
        public = self.peers.get(sealed.sender_id)
        if public is None:
            raise FedsynthError(f"hospital {sealed.sender_id} is not a pinned ring peer (ring.peers)")
        payload = open_sealed(
            sealed.blob,
            receiver_id=self.hospital_id,
            receiver_key=self.key,
            sender_id=sealed.sender_id,
            sender_public=public,
            context=ring_context(run_id, sealed.sender_round),
        )
        return model_from_bytes(payload)


def ring_refusal(ring: RingSealing, instruction: RoundInstruction, job: Job) -> str | None:
    """Why the site refuses ``instruction`` under its ``[ring]`` table and the job's request, or None.

    - a site with ``required = true`` takes no plaintext peer weights and no job that does not ask
      for a sealed ring (so it never sends ring weights in plaintext);
    - in a sealed job the site needs its key and pinned neighbours, and takes neither plaintext
      peer weights nor weights from the server (every hospital starts from the job's seeded
      initialization, identical everywhere, and merges only sealed peer models);
    - a sealed model must come from a pinned neighbour, in a job that asks for sealing;
    - a release carries nothing to load.
    """
    if instruction.merge and (ring.required or job.ring_sealed):
        why = "ring.required = true" if ring.required else "the job asks for a sealed ring"
        return f"{why}: the instruction carries plaintext peer weights (merge); the site takes peer models only sealed"
    if ring.required and not job.ring_sealed:
        return (
            "ring.required = true: the site takes part only in sealed rings, and the job does not ask for one "
            "(federation.ring_sealed = false)"
        )
    if instruction.phase == RELEASE and (instruction.weights is not None or instruction.sealed is not None):
        return "a release of the final model carries no weights to load"
    if job.ring_sealed:
        if not ring.key.strip():
            return "the job asks for a sealed ring (federation.ring_sealed), but the site has no ring key (ring.key)"
        if not ring.peers:
            return "the job asks for a sealed ring (federation.ring_sealed), but the site pins no peers (ring.peers)"
        if instruction.weights is not None:
            return (
                "a sealed ring takes no weights from the server: every hospital starts from the job's seeded "
                "initialization and merges only sealed peer models"
            )
    if instruction.sealed is not None:
        if not job.ring_sealed:
            return "the instruction carries a sealed peer model, but the job does not ask for a sealed ring"
        if instruction.sealed.sender_id not in ring.pinned():
            return (
                f"the sealed model comes from hospital {instruction.sealed.sender_id}, which the site does not "
                "pin (ring.peers)"
            )
    return None
