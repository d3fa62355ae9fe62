"""``fedsynth keys``: make the keys and certificates of a real (or loopback) consortium.

A coordinator runs Flower's SuperLink; each hospital runs one SuperNode. ``fedsynth keys
consortium --out DIR --hospitals N`` writes, for hospitals 0 .. N-1::

    DIR/ca/ca.pem, ca.key              the authority (keep ca.key offline)
    DIR/coordinator/ca.pem, server.pem, server.key
    DIR/hospital-<i>/ca.pem, node.key, node.pub, ring.key, ring.pub
    DIR/consortium.toml                public manifest: the CA certificate's SHA-256
                                       fingerprint; per hospital id its node.pub line, node key
                                       fingerprint and ring.pub text

Then (Flower 1.41, whose SuperLink serves its Fleet, Control and Runtime APIs over HTTPS on one
``--host``/``--port``, default 127.0.0.1:8000)::

    flower-superlink --host 0.0.0.0 --port 8000 --ssl-ca-certfile DIR/coordinator/ca.pem \\
        --ssl-certfile DIR/coordinator/server.pem --ssl-keyfile DIR/coordinator/server.key \\
        --enable-supernode-auth
    # the coordinator's flwr CLI, in $FLWR_HOME/config.toml:
    #   [superlink.consortium]  address = "HOST:8000"
    #                           root-certificates = "/abs/DIR/coordinator/ca.pem"
    flwr supernode register DIR/hospital-<i>/node.pub         # once per hospital
    flower-supernode --superlink HOST:8000 --root-certificates DIR/hospital-<i>/ca.pem \\
        --auth-supernode-private-key DIR/hospital-<i>/node.key

HOST must be one of the ``--host`` names of the server certificate.

``fedsynth keys hospital`` lets a site make its own keys (its private keys never leave it);
``fedsynth keys server`` issues a new server certificate from an existing authority. Private key
files are created with mode 0600; no existing file is overwritten without ``--force``. What is
printed holds paths and fingerprints only, never private key contents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tomli_w
import typer
from rich.console import Console
from rich.markup import escape

from fedsynth.consortium.layout import (
    DEFAULT_HOSTS,
    HospitalKeys,
    certificate_of,
    create_consortium,
    create_hospital_keys,
    issue_coordinator,
)
from fedsynth.consortium.pki import certificate_fingerprint, load_authority
from fedsynth.errors import FedsynthError

LAYOUT_HELP = """Layout written under --out DIR (i = 0 .. N-1):

\b
  DIR/ca/ca.pem, ca.key          the authority (keep ca.key offline)
  DIR/coordinator/ca.pem, server.pem, server.key
  DIR/hospital-<i>/ca.pem, node.key, node.pub, ring.key, ring.pub
  DIR/consortium.toml            public manifest: CA SHA-256 fingerprint;
                                 per hospital id its node.pub line, node
                                 key fingerprint and ring.pub text
"""
app = typer.Typer(
    name="keys",
    help="Make a consortium's CA, the coordinator's TLS certificate and the hospitals' node and ring keys.",
    no_args_is_help=True,
)

HostOption = Annotated[
    list[str] | None,
    typer.Option(
        "--host",
        help="An address hospitals dial to reach the coordinator (IP or DNS name; repeat the option). "
        "Default: 127.0.0.1 and localhost.",
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace existing key, certificate and manifest files.")]


def _stdout() -> Console:
    return Console(soft_wrap=True, highlight=False, emoji=False)


def _fail(error: FedsynthError) -> typer.Exit:
    Console(stderr=True, soft_wrap=True, highlight=False, emoji=False).print(f"[red]error:[/red] {escape(str(error))}")
    return typer.Exit(2)


def _print_hospital(out: Console, hospital: HospitalKeys) -> None:
    out.print(f"hospital {hospital.hospital_id}: {escape(str(hospital.directory))}")
    out.print(f"  node.key  {escape(str(hospital.node.private_path))}  (private, 0600)")
    out.print(f"  node.pub  {escape(str(hospital.node.public_path))}  {hospital.node.fingerprint}")
    out.print(f"  ring.key  {escape(str(hospital.ring.private_path))}  (private, 0600)")
    out.print(f"  ring.pub  {escape(str(hospital.ring.public_path))}  {hospital.ring.public_text}")
    if hospital.ca_certificate is not None:
        out.print(f"  ca.pem    {escape(str(hospital.ca_certificate))}")


@app.command(
    "consortium",
    short_help="CA, coordinator TLS files, every hospital's keys and the public manifest.",
    help="Write everything a loopback or real consortium needs: the authority, the coordinator's TLS "
    "files, every hospital's node and ring keys and the public manifest. Refuses to overwrite any "
    "existing file (nothing is written) unless --force.\n\n" + LAYOUT_HELP,
)
def consortium(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the layout into.")],
    hospitals: Annotated[int, typer.Option("--hospitals", "-n", min=1, help="Number of hospitals (ids 0 .. N-1).")],
    host: HostOption = None,
    force: ForceOption = False,
) -> None:
    try:
        made = create_consortium(out, hospitals, list(host or DEFAULT_HOSTS), overwrite=force)
    except FedsynthError as e:
        raise _fail(e) from e
    console = _stdout()
    console.print(f"authority: {escape(str(made.authority.certificate_path))}  sha256 {made.authority.fingerprint}")
    console.print(f"  ca.key    {escape(str(made.authority.key_path))}  (private, 0600: keep it offline)")
    console.print(f"coordinator: {escape(str(made.server_certificate))}  hosts {', '.join(made.hosts)}")
    console.print(f"  server.key {escape(str(made.server_key))}  (private, 0600)")
    for member in made.hospitals:
        _print_hospital(console, member)
    console.print(f"manifest: {escape(str(made.manifest))}  (public)")


@app.command(
    "hospital",
    short_help="One site's own node and ring keys (its private keys never leave it).",
    help="Make one site's own keys in --out DIR: node.key/node.pub (SuperNode authentication, OpenSSH "
    "EC P-384) and ring.key/ring.pub (X25519 ring sealing), plus a copy of --ca-cert as ca.pem. Send "
    "the printed public entry to the coordinator; the private keys never leave the site. Refuses to "
    "overwrite existing files unless --force.\n\n"
    "\b\nLayout: DIR/ca.pem (with --ca-cert), node.key, node.pub, ring.key, ring.pub",
)
def hospital(
    out: Annotated[Path, typer.Option("--out", "-o", help="The site's key folder.")],
    id_: Annotated[int, typer.Option("--id", min=0, help="This hospital's id in the consortium.")],
    ca_cert: Annotated[
        Path | None, typer.Option("--ca-cert", help="The consortium's CA certificate, copied to DIR/ca.pem.")
    ] = None,
    force: ForceOption = False,
) -> None:
    try:
        made = create_hospital_keys(out, id_, ca_cert, overwrite=force)
        ca_fingerprint = certificate_fingerprint(certificate_of(made.ca_certificate)) if made.ca_certificate else None
    except FedsynthError as e:
        raise _fail(e) from e
    console = _stdout()
    _print_hospital(console, made)
    if ca_fingerprint is not None:
        console.print(f"  ca.pem sha256 {ca_fingerprint}  (compare with the manifest's authority.sha256)")
    console.print("entry for the coordinator's consortium.toml:")
    console.print(tomli_w.dumps({"hospitals": [made.manifest_entry()]}).rstrip(), markup=False)


@app.command(
    "server",
    short_help="A new coordinator TLS server certificate from an existing authority.",
    help="Issue a new TLS server certificate for the coordinator from an existing authority (--ca DIR "
    "holding ca.pem and ca.key), for every --host hospitals dial. Refuses to overwrite existing files "
    "unless --force.\n\n\b\nLayout: OUT/ca.pem, server.pem, server.key (server.key private, 0600)",
)
def server(
    ca: Annotated[Path, typer.Option("--ca", help="Folder of the authority (ca.pem and ca.key).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for ca.pem, server.pem and server.key.")],
    host: HostOption = None,
    force: ForceOption = False,
) -> None:
    hosts = list(host or DEFAULT_HOSTS)
    try:
        authority = load_authority(ca)
        cert, key = issue_coordinator(authority, out, hosts, overwrite=force)
    except FedsynthError as e:
        raise _fail(e) from e
    console = _stdout()
    console.print(f"authority: {escape(str(authority.certificate_path))}  sha256 {authority.fingerprint}")
    console.print(f"server.pem {escape(str(cert))}  hosts {', '.join(dict.fromkeys(hosts))}")
    console.print(f"server.key {escape(str(key))}  (private, 0600)")
    console.print(f"ca.pem     {escape(str(out / 'ca.pem'))}")
