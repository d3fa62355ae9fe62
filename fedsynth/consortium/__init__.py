"""Keys and certificates for a real consortium deployment, and end-to-end sealing of ring payloads.

A coordinator runs Flower's SuperLink; each hospital runs one SuperNode. This package makes and
runs what that needs, with no third party:

- :mod:`~fedsynth.consortium.pki`: a private certificate authority and the coordinator's TLS
  server certificate (hospitals trust only that authority);
- :mod:`~fedsynth.consortium.node_keys`: each hospital's SuperNode authentication key pair, in the
  OpenSSH form Flower's node authentication reads;
- :mod:`~fedsynth.consortium.layout`: the folder layout of a whole consortium's keys and its
  public manifest ``consortium.toml``;
- :mod:`~fedsynth.consortium.sealing`: X25519 ring keys and the sealing of payloads passed from
  hospital to hospital through the server, which then sees only ciphertext it cannot alter;
- :mod:`~fedsynth.consortium.coordinator` and :mod:`~fedsynth.consortium.registry`: the SuperLink's
  command, connections, node registration and the registry by which the server knows hospitals;
- :mod:`~fedsynth.consortium.site_node` and :mod:`~fedsynth.consortium.gate`: a hospital's SuperNode
  from its site file, and the gate that runs only app bundles the site approved.

Private key files are created with mode 0600 and never overwritten unless asked
(:mod:`~fedsynth.consortium.files`). The command line (``fedsynth keys``) is a thin layer over this.
"""

from fedsynth.consortium.files import ExistingKeyFileError
from fedsynth.consortium.layout import (
    Consortium,
    HospitalKeys,
    create_consortium,
    create_hospital_keys,
    issue_coordinator,
)
from fedsynth.consortium.node_keys import NodeKey, create_node_key, key_fingerprint, load_node_public
from fedsynth.consortium.pki import (
    Authority,
    certificate_fingerprint,
    create_authority,
    issue_server_certificate,
    load_authority,
)
from fedsynth.consortium.sealing import (
    RingKey,
    SealError,
    create_ring_key,
    load_ring_private,
    load_ring_public,
    open_sealed,
    ring_public_from_text,
    ring_public_text,
    seal,
)

__all__ = [
    "Authority",
    "Consortium",
    "ExistingKeyFileError",
    "HospitalKeys",
    "NodeKey",
    "RingKey",
    "SealError",
    "certificate_fingerprint",
    "create_authority",
    "create_consortium",
    "create_hospital_keys",
    "create_node_key",
    "create_ring_key",
    "issue_coordinator",
    "issue_server_certificate",
    "key_fingerprint",
    "load_authority",
    "load_node_public",
    "load_ring_private",
    "load_ring_public",
    "open_sealed",
    "ring_public_from_text",
    "ring_public_text",
    "seal",
]
