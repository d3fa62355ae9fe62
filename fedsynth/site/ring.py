"""A site's ring sealing: its ring key, the neighbours it pins, and whether it insists on sealing.

In a ring federation the server relays each hospital's model to the next hospital. With sealing
(``federation.ring_sealed`` in the server's request) a hospital seals its model for each pinned
neighbour (:mod:`fedsynth.consortium.sealing`), so the relay sees only ciphertext and cannot read,
alter, replay or substitute it. What the site trusts comes from its own site file, never from the
server::

    [ring]
    key = "ring.key"           # the site's X25519 ring key (PKCS#8 PEM), relative to the site file
    peers = ["1:BASE64...", "2:BASE64..."]   # pinned neighbours: HOSPITAL_ID:BASE64_PUBLIC_KEY
    required = true            # take part only in sealed rings; never send ring weights in plaintext

A site with a key seals when the job asks for a sealed ring; a site with ``required = true``
refuses every job that does not, and every instruction that carries plaintext peer weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from fedsynth.consortium.sealing import ring_public_from_text
from fedsynth.errors import ConfigError, FedsynthError

PEER_FORMAT = "HOSPITAL_ID:BASE64_PUBLIC_KEY (a hospital id >= 0, then the 32-byte X25519 key of its ring.pub)"


def parse_peer(text: str, key: str) -> tuple[int, X25519PublicKey]:
    """``"1:BASE64"`` -> (1, public key); errors name ``key`` and the expected form."""
    head, sep, tail = str(text).partition(":")
    if not sep:
        raise ConfigError(f"{key} = {text!r}: expected {PEER_FORMAT}")
    try:
        hospital_id = int(head.strip())
    except ValueError:
        raise ConfigError(f"{key} = {text!r}: the hospital id {head.strip()!r} is not an integer") from None
    if hospital_id < 0:
        raise ConfigError(f"{key} = {text!r}: expected a hospital id >= 0")
    try:
        return hospital_id, ring_public_from_text(tail)
    except FedsynthError as e:
        raise ConfigError(f"{key}: hospital {hospital_id}'s {e}") from None


@dataclass(frozen=True)
class RingSealing:
    """The ``[ring]`` table of a site file (see the module docstring).

    ``key``: path of the site's ring private key, relative to the site file (empty: no key, the
    site cannot take part in a sealed ring). ``peers``: the neighbours whose sealed models the site
    opens and for whom it seals its own, as ``"HOSPITAL_ID:BASE64_PUBLIC_KEY"``. ``required``: the
    site takes part only in sealed rings (it refuses plaintext peer weights and unsealed jobs).
    """

    key: str = ""
    peers: tuple[str, ...] = ()
    required: bool = False

    def __post_init__(self) -> None:
        seen: set[int] = set()
        for i, text in enumerate(self.peers):
            hospital_id, _ = parse_peer(text, f"ring.peers[{i}]")
            if hospital_id in seen:
                raise ConfigError(f"ring.peers[{i}] = {text!r}: hospital {hospital_id} is pinned twice")
            seen.add(hospital_id)
        if (self.required or self.peers) and not self.key.strip():
            what = "ring.required = true" if self.required else "ring.peers"
            raise ConfigError(f"ring.key: empty, but {what} is set (expected the path of the site's ring.key file)")

    def pinned(self) -> dict[int, X25519PublicKey]:
        """The pinned neighbours' ring public keys, by hospital id."""
        return dict(parse_peer(text, f"ring.peers[{i}]") for i, text in enumerate(self.peers))
