"""The coordinator's side of a deployment: the SuperLink, its connection, node registration, runs.

- :func:`superlink_command`: ``flower-superlink`` with TLS (the consortium's server certificate),
  ``--enable-supernode-auth`` (only registered hospital keys connect) and a ``--database`` file (a
  restarted SuperLink keeps its registered nodes, runs and messages); runtime dependency
  installation off (the app runs in the installed environment).
- :func:`write_connection`: the named SuperLink connection in ``$FLWR_HOME/config.toml`` that
  ``flwr run`` and ``flwr supernode register`` use.
- :func:`register_hospital`: ``flwr supernode register`` for one hospital's public key, recorded
  in the node registry (:mod:`fedsynth.consortium.registry`).
- :func:`app_hash`: the SHA-256 of the app bundle Flower builds from an app folder (builds are
  reproducible: fixed file order and timestamps), which sites approve.
- :func:`run_command`: ``flwr run`` of the app against the connection, with a run-config file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from fedsynth.config import RunConfig
from fedsynth.config.loading import to_nested
from fedsynth.consortium.node_keys import key_fingerprint
from fedsynth.consortium.registry import NodeRegistry, RegisteredNode
from fedsynth.errors import ConfigError


def tool(name: str) -> str:
    """A console script of this environment (next to the running Python), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def superlink_command(
    database: Path,
    tls_dir: Path | None,
    host: str = "127.0.0.1",
    port: int = 9092,
    insecure: bool = False,
) -> list[str]:
    """The ``flower-superlink`` command (see the module docstring); ``tls_dir`` holds ca.pem,
    server.pem and server.key (``fedsynth keys consortium`` writes them to ``coordinator/``)."""
    command = [tool("flower-superlink"), "--host", host, "--port", str(port), "--database", str(database)]
    command.append("--disable-runtime-dependency-installation")
    if insecure:
        return [*command, "--insecure"]
    if tls_dir is None:
        raise ConfigError("the SuperLink needs TLS files (ca.pem, server.pem, server.key) or --insecure")
    files = {name: tls_dir / name for name in ("ca.pem", "server.pem", "server.key")}
    for name, path in files.items():
        if not path.is_file():
            raise ConfigError(f"{path}: missing (expected the coordinator's {name}; see `fedsynth keys consortium`)")
    return [
        *command,
        "--ssl-ca-certfile",
        str(files["ca.pem"]),
        "--ssl-certfile",
        str(files["server.pem"]),
        "--ssl-keyfile",
        str(files["server.key"]),
        "--enable-supernode-auth",
    ]


def flwr_home() -> Path:
    return Path(os.environ.get("FLWR_HOME", Path.home() / ".flwr"))


def write_connection(
    name: str, address: str, root_certificates: Path | None, insecure: bool = False, home: Path | None = None
) -> Path:
    """Add or replace the SuperLink connection ``name`` in ``$FLWR_HOME/config.toml``."""
    import tomli_w

    path = (home or flwr_home()) / "config.toml"
    data = tomllib.loads(path.read_text()) if path.is_file() else {}
    links = data.setdefault("superlink", {})
    entry: dict = {"address": address}
    if insecure:
        entry["insecure"] = True
    elif root_certificates is not None:
        entry["root-certificates"] = str(Path(root_certificates).resolve())
    else:
        raise ConfigError(f"connection {name}: give the consortium CA certificate (or insecure for a local test)")
    links[name] = entry
    links.setdefault("default", name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(data))
    return path


def register_hospital(
    hospital_id: int, public_key: Path, registry_path: Path, connection: str, env: dict | None = None
) -> RegisteredNode:
    """Register one hospital's node key with the SuperLink and record its node id."""
    if not public_key.is_file():
        raise ConfigError(f"{public_key}: no such public key file (the hospital's node.pub)")
    registry = NodeRegistry.load(registry_path) if registry_path.is_file() else NodeRegistry([])
    fingerprint = key_fingerprint(public_key.read_bytes())
    old = registry.nodes.get(hospital_id)
    if old is not None and old.key_fingerprint == fingerprint:
        return old  # already registered with this key
    done = subprocess.run(
        [tool("flwr"), "supernode", "register", str(public_key), connection, "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        answer = {}
    if done.returncode != 0 or not answer.get("success"):
        raise ConfigError(
            f"registering hospital {hospital_id} ({public_key}) failed: {(done.stdout + done.stderr).strip()[-500:]}"
        )
    node = RegisteredNode(hospital_id, int(answer["node-id"]), fingerprint)
    registry.with_node(node).save(registry_path)
    return node


def app_hash(app_dir: Path) -> str:
    """The SHA-256 of the app bundle (FAB) Flower builds from ``app_dir`` for ``flwr run``."""
    from flwr.cli.build import build_fab_from_disk

    if not (app_dir / "pyproject.toml").is_file():
        raise ConfigError(f"{app_dir}: not a Flower app folder (no pyproject.toml)")
    return hashlib.sha256(build_fab_from_disk(app_dir)).hexdigest()


def flower_run_config(config: RunConfig, resume: bool = False) -> str:
    """``config`` as a ``flwr run --run-config`` file: nested tables of scalars (Flower accepts no
    lists: a tuple is written in the comma-separated form the configuration loader reads back);
    ``resume`` asks the ServerApp to continue the run folder's last checkpoint."""
    import tomli_w

    def scalars(value):
        if isinstance(value, dict):
            return {k: scalars(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        return value

    from fedsynth.flower.server import RESUME_KEY

    return tomli_w.dumps({RESUME_KEY: resume, **scalars(to_nested(config))})


def run_command(app_dir: Path, connection: str, run_config: Path, stream: bool = True) -> list[str]:
    """``flwr run`` of the app in ``app_dir`` against ``connection`` with a run-config TOML file."""
    command = [tool("flwr"), "run", str(app_dir), connection, "--run-config", str(run_config)]
    return [*command, "--stream"] if stream else command
