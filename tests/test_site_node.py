"""A site's node from its site file: what `fedsynth site join` writes and what `site start` refuses
(fast checks without processes; tests/test_deployment.py runs the real thing)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsynth.cli.main import app
from fedsynth.consortium.coordinator import superlink_command
from fedsynth.consortium.site_node import supernode_command
from fedsynth.errors import ConfigError
from fedsynth.site.config import SiteConfig, load_site, write_site


def _site(tmp_path: Path) -> Path:
    path = tmp_path / "site" / "site.toml"
    write_site(SiteConfig(hospital_id=4, data="data.npz"), path)
    for name in ("ca.pem", "node.key"):
        (tmp_path / name).write_text("placeholder")
    return path


def test_join_then_approve_write_the_node_table(tmp_path: Path) -> None:
    path = _site(tmp_path)
    runner = CliRunner()
    done = runner.invoke(
        app,
        ["site", "join", str(path), "--superlink", "10.0.0.5:9092", "--ca", str(tmp_path / "ca.pem")]
        + ["--node-key", str(tmp_path / "node.key"), "--runtime-port", "9201"],
    )
    assert done.exit_code == 0, done.output
    node = load_site(path).config.node
    assert (node.superlink, node.runtime_port) == ("10.0.0.5:9092", 9201)
    assert Path(node.root_certificates) == (tmp_path / "ca.pem").resolve()
    # Without an approved bundle the node does not start.
    with pytest.raises(ConfigError, match="approved_apps is empty"):
        supernode_command(load_site(path))
    app_dir = Path(__file__).resolve().parents[1]
    assert runner.invoke(app, ["site", "approve", str(path), str(app_dir)]).exit_code == 0
    command = supernode_command(load_site(path))
    assert command[command.index("--root-certificates") + 1] == str((tmp_path / "ca.pem").resolve())
    assert command[command.index("--auth-supernode-private-key") + 1] == str((tmp_path / "node.key").resolve())
    assert command[command.index("--isolation") + 1] == "process" and "--insecure" not in command
    assert f'site-file="{path.resolve()}"' in command


def test_a_node_without_tls_files_is_refused_unless_insecure(tmp_path: Path) -> None:
    path = _site(tmp_path)
    text = path.read_text().replace('superlink = ""', 'superlink = "127.0.0.1:9092"')
    path.write_text(text.replace("approved_apps = []", f'approved_apps = ["{"a" * 64}"]'))
    with pytest.raises(ConfigError, match="root_certificates is empty"):
        supernode_command(load_site(path))
    assert "--insecure" in supernode_command(load_site(path), insecure=True)


def test_the_superlink_runs_with_tls_node_authentication_and_a_database(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ca.pem: missing"):
        superlink_command(tmp_path / "link.db", tmp_path)
    for name in ("ca.pem", "server.pem", "server.key"):
        (tmp_path / name).write_text("placeholder")
    command = superlink_command(tmp_path / "link.db", tmp_path, port=9300)
    assert "--enable-supernode-auth" in command and "--insecure" not in command
    assert command[command.index("--database") + 1] == str(tmp_path / "link.db")
    assert command[command.index("--ssl-certfile") + 1] == str(tmp_path / "server.pem")


def test_site_start_stops_on_sigterm_while_it_keeps_trying_to_join(tmp_path: Path) -> None:
    """A supervised node that cannot reach its SuperLink keeps retrying; SIGTERM ends it cleanly
    (a signal handler that waited on the process being waited for would hang here)."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    path = _site(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens there
    text = path.read_text().replace('superlink = ""', f'superlink = "127.0.0.1:{dead}"')
    path.write_text(text.replace("approved_apps = []", f'approved_apps = ["{"a" * 64}"]'))
    fedsynth = str(Path(sys.executable).parent / "fedsynth")
    command = [fedsynth, "site", "start", str(path), "--insecure", "--log-dir", str(tmp_path / "logs")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(8)  # started, failed to connect, retrying
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("fedsynth site start did not stop on SIGTERM")
    leftover = subprocess.run(["pgrep", "-f", str(path)], capture_output=True, text=True).stdout.split()
    assert not leftover  # its SuperNode and gate are gone too
