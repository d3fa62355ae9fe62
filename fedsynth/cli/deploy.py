"""``fedsynth site`` and ``fedsynth coordinator``: a real consortium of Flower processes.

A hospital runs ``fedsynth site start SITE_FILE`` (its SuperNode and app gate, see
:mod:`fedsynth.consortium.site_node`); the coordinator runs ``fedsynth coordinator start`` (the
SuperLink), registers each hospital's node key and launches runs with ``fedsynth coordinator
run``. docs/deployment.md is the runbook.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedsynth.errors import FedsynthError

console = Console(stderr=True)
site_app = typer.Typer(
    help="A hospital's node: start it from its site file, approve app bundles.", no_args_is_help=True
)
coordinator_app = typer.Typer(
    help="The coordinator: SuperLink, connections, node registration, runs.", no_args_is_help=True
)

SiteFile = Annotated[Path, typer.Argument(help="The hospital's site file (site.toml with a [node] table).")]


def _fail(e: FedsynthError) -> typer.Exit:
    console.print(f"[red]error:[/red] {e}")
    return typer.Exit(2)


@site_app.command("start")
def site_start(
    site_file: SiteFile,
    insecure: Annotated[
        bool, typer.Option(help="Connect without TLS and node authentication (a local test only).")
    ] = False,
    log_dir: Annotated[Path | None, typer.Option(help="Write the node's logs here instead of the console.")] = None,
    rejoin_seconds: Annotated[
        float, typer.Option(help="Keep trying to (re)join this long after the node fails (0: give up at once).")
    ] = 600.0,
) -> None:
    """Start the hospital's SuperNode (TLS, node authentication) and its app gate; runs until stopped.

    Refuses to start without the CA certificate and node key of its [node] table unless --insecure,
    and without at least one approved app bundle. The node serves only this site file; after a
    failure it is started again until it rejoins (for up to --rejoin-seconds)."""
    from fedsynth.consortium.site_node import start_site
    from fedsynth.site.config import load_site

    try:
        node = start_site(load_site(site_file), insecure=insecure, log_dir=log_dir)
    except FedsynthError as e:
        raise _fail(e) from e
    signal.signal(signal.SIGTERM, lambda *_: node.request_stop())
    console.print(f"hospital {node.site.hospital_id}: node started (SuperLink {node.site.config.node.superlink})")
    try:
        code = node.supervise(rejoin_seconds)
    except KeyboardInterrupt:
        code = 0
    finally:
        node.stop()
    raise typer.Exit(code)


@site_app.command("join")
def site_join(
    site_file: SiteFile,
    superlink: Annotated[str, typer.Option(help="The coordinator's SuperLink as host:port.")],
    ca: Annotated[Path, typer.Option(help="The consortium CA certificate (ca.pem).")],
    node_key: Annotated[Path, typer.Option(help="This hospital's node.key (registered by the coordinator).")],
    runtime_port: Annotated[int, typer.Option(help="Local port of the node's own Runtime API (127.0.0.1).")] = 9094,
) -> None:
    """Write the site file's [node] table: where the SuperLink is and which CA and key to use.

    Keeps the approved app bundles already listed."""
    import dataclasses

    from fedsynth.site.config import load_site, write_site

    try:
        site = load_site(site_file)
        node = dataclasses.replace(
            site.config.node,
            superlink=superlink,
            root_certificates=str(ca.resolve()),
            node_key=str(node_key.resolve()),
            runtime_port=runtime_port,
        )
        write_site(dataclasses.replace(site.config, node=node), site.file)
    except FedsynthError as e:
        raise _fail(e) from e
    console.print(f"hospital {site.hospital_id} joins {superlink} (CA {ca}, key {node_key})")


@site_app.command("app-hash")
def site_app_hash(
    app_dir: Annotated[Path, typer.Argument(help="The app folder (its pyproject.toml).")] = Path("."),
) -> None:
    """Print the SHA-256 of the app bundle Flower builds from APP_DIR (what `flwr run` ships)."""
    from fedsynth.consortium.coordinator import app_hash

    try:
        print(app_hash(app_dir))
    except FedsynthError as e:
        raise _fail(e) from e


@site_app.command("approve")
def site_approve(
    site_file: SiteFile,
    app_dir: Annotated[Path, typer.Argument(help="The app folder the site reviewed.")] = Path("."),
) -> None:
    """Add the bundle hash of APP_DIR to the site file's node.approved_apps."""
    import dataclasses

    from fedsynth.consortium.coordinator import app_hash
    from fedsynth.site.config import load_site, write_site

    try:
        site = load_site(site_file)
        digest = app_hash(app_dir)
        node = site.config.node
        if digest not in node.approved_apps:
            node = dataclasses.replace(node, approved_apps=(*node.approved_apps, digest))
            write_site(dataclasses.replace(site.config, node=node), site.file)
    except FedsynthError as e:
        raise _fail(e) from e
    console.print(f"hospital {site.hospital_id} approves app bundle {digest}")


@coordinator_app.command("start")
def coordinator_start(
    database: Annotated[Path, typer.Option(help="SuperLink state file: a restart loses nothing.")],
    tls_dir: Annotated[
        Path | None, typer.Option(help="Folder with ca.pem, server.pem, server.key (keys consortium: coordinator/).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for remote sites).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The SuperLink's port (Fleet, Control and Runtime APIs).")] = 9092,
    insecure: Annotated[bool, typer.Option(help="No TLS and no node authentication (a local test only).")] = False,
) -> None:
    """Run the SuperLink in the foreground: TLS, node authentication, state in DATABASE."""
    from fedsynth.consortium.coordinator import superlink_command

    try:
        command = superlink_command(database, tls_dir, host, port, insecure)
    except FedsynthError as e:
        raise _fail(e) from e
    database.parent.mkdir(parents=True, exist_ok=True)
    os.execv(command[0], command)


@coordinator_app.command("connect")
def coordinator_connect(
    name: Annotated[str, typer.Argument(help="Connection name (used by run and register).")],
    address: Annotated[str, typer.Option(help="The SuperLink as host:port.")],
    ca: Annotated[Path | None, typer.Option(help="The consortium CA certificate (ca.pem).")] = None,
    insecure: Annotated[bool, typer.Option(help="A local test without TLS.")] = False,
) -> None:
    """Write the SuperLink connection NAME into $FLWR_HOME/config.toml (for flwr run / register)."""
    from fedsynth.consortium.coordinator import write_connection

    try:
        path = write_connection(name, address, ca, insecure)
    except FedsynthError as e:
        raise _fail(e) from e
    console.print(f"connection {name} -> {address} in {path}")


@coordinator_app.command("register")
def coordinator_register(
    hospital: Annotated[int, typer.Option(help="The hospital id this key belongs to.")],
    key: Annotated[Path, typer.Option(help="The hospital's node.pub (OpenSSH, NIST P-384).")],
    registry: Annotated[Path, typer.Option(help="The node registry file to update (nodes.toml).")],
    connection: Annotated[str, typer.Option(help="The SuperLink connection name.")],
) -> None:
    """Register a hospital's node key with the SuperLink and record which node is that hospital."""
    from fedsynth.consortium.coordinator import register_hospital

    try:
        node = register_hospital(hospital, key, registry, connection)
    except FedsynthError as e:
        raise _fail(e) from e
    console.print(f"hospital {hospital}: node {node.node_id} ({node.key_fingerprint}) in {registry}")


@coordinator_app.command("run")
def coordinator_run(
    out: Annotated[Path, typer.Option(help="Run folder (on the coordinator's disk).")],
    registry: Annotated[Path, typer.Option(help="The node registry (nodes.toml).")],
    connection: Annotated[str, typer.Option(help="The SuperLink connection name.")],
    schema: Annotated[
        Path | None, typer.Option(help="The consortium's public schema (schema.json); not with --resume.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML run configuration.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override one key.")] = None,
    app_dir: Annotated[Path, typer.Option(help="The app folder whose bundle the sites approved.")] = Path("."),
    resume: Annotated[
        bool, typer.Option(help="Continue the interrupted run in OUT from its last checkpoint (its own config).")
    ] = False,
) -> None:
    """Launch a run on the consortium with `flwr run`, the same configuration as a simulation.

    Writes OUT/config.toml, OUT/schema.json and OUT/run-config.toml, then streams the run; the
    ServerApp writes the run folder (metrics.jsonl, privacy.json from the ledgers the sites report,
    summary.json, model/, synthetic/). With --resume the run in OUT continues after its last
    checkpointed round; the sites keep their own state and ledgers."""
    from fedsynth.config import load_config
    from fedsynth.consortium.coordinator import flower_run_config, run_command
    from fedsynth.runfolder import RunFolder

    try:
        out = out.resolve()
        placed = [f'out_dir="{out}"', f'federation.node_registry="{registry.resolve()}"']
        if resume:
            if config is not None or set_ or schema is not None:
                raise FedsynthError("--resume takes the run's own config.toml and schema.json: drop --config/--set")
            if not (out / "config.toml").is_file():
                raise FedsynthError(f"{out}: no config.toml, not a run folder to resume")
            cfg = load_config(out / "config.toml", placed)
        else:
            cfg = load_config(config, [*(set_ or []), *placed])
            if schema is None or not schema.is_file():
                raise FedsynthError(f"{schema}: no such schema file (the consortium's public schema.json)")
            out.mkdir(parents=True, exist_ok=True)
            if schema.resolve() != (out / "schema.json").resolve():
                shutil.copyfile(schema, out / "schema.json")
            RunFolder(out).write_config(cfg)
        run_config = out / "run-config.toml"
        run_config.write_text(flower_run_config(cfg, resume=resume))
    except FedsynthError as e:
        raise _fail(e) from e
    raise typer.Exit(subprocess.call(run_command(app_dir.resolve(), connection, run_config)))


def register(app: typer.Typer) -> None:
    """Add the ``site`` and ``coordinator`` command groups to the fedsynth CLI."""
    app.add_typer(site_app, name="site")
    app.add_typer(coordinator_app, name="coordinator")
