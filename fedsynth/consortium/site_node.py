"""Start a real hospital's Flower SuperNode from its site file, safe by default.

A site runs two processes: ``flower-supernode`` (TLS to the SuperLink, verified against the
consortium CA; node authentication with the site's registered key; ``--isolation process``), and
the site's app gate (:mod:`fedsynth.consortium.gate`) which executes the node's tasks, only for app
bundles the site approved. The node's config names the site file, so the ClientApp serves exactly
this site: its records, its state directory, its policy and its ledger, on its own disk.

Without TLS and node authentication the node refuses to start unless told ``insecure`` (a local
test); it never starts without approved app bundles.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fedsynth.consortium.gate import node_state_dir
from fedsynth.errors import ConfigError
from fedsynth.site.config import Site


def _require_file(site: Site, key: str, relative: str) -> Path:
    if not relative:
        raise ConfigError(f"{site.file}: node.{key} is empty (expected a file path; or start with --insecure)")
    path = site.path_of(relative)
    if not path.is_file():
        raise ConfigError(f"{site.file}: node.{key} = {relative!r}: no such file ({path})")
    return path


def supernode_command(site: Site, insecure: bool = False, max_wait_seconds: float | None = None) -> list[str]:
    """The ``flower-supernode`` command line for ``site`` (see the module docstring)."""
    node = site.config.node
    if not node.configured:
        raise ConfigError(f"{site.file}: no [node] table with superlink = 'host:port' (a real site needs one)")
    if not node.approved_apps:
        raise ConfigError(
            f"{site.file}: node.approved_apps is empty: approve the app bundle's SHA-256 "
            "(`fedsynth site app-hash APP_DIR`) before joining"
        )
    command = [_tool("flower-supernode"), "--superlink", node.superlink]
    if insecure:
        command.append("--insecure")
    else:
        command += ["--root-certificates", str(_require_file(site, "root_certificates", node.root_certificates))]
        command += ["--auth-supernode-private-key", str(_require_file(site, "node_key", node.node_key))]
    command += ["--isolation", "process", "--host", "127.0.0.1", "--port", str(node.runtime_port)]
    command += ["--node-config", f'site-file="{site.file}"']
    if max_wait_seconds is not None:
        command += ["--max-wait-time", str(max_wait_seconds)]
    return command


def gate_command(site: Site, parent_pid: int) -> list[str]:
    """The app gate's command line, attached to the node's Runtime API (loopback)."""
    return [
        sys.executable,
        "-m",
        "fedsynth.consortium.gate",
        "--runtime-api-address",
        f"127.0.0.1:{site.config.node.runtime_port}",
        "--site",
        str(site.file),
        "--parent-pid",
        str(parent_pid),
    ]


def _tool(name: str) -> str:
    """A console script of this environment (next to the running Python)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def node_environment(site: Site) -> dict[str, str]:
    """Environment of the site's processes: its own Flower home (app installs) under its state."""
    home = node_state_dir(site) / "flwr"
    home.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    # The gate polls the node's local Runtime API for tasks (Flower's default: every second).
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": path}
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.25")
    return env


class SiteNode:
    """The running processes of one site: the SuperNode and its app gate, supervised.

    A SuperNode restarted soon after it died (a crash, a reboot) is refused by the SuperLink until
    its old session's heartbeat lapses; :meth:`supervise` therefore starts it again every few
    seconds until it rejoins, for up to ``rejoin_seconds``, under the same registered key.
    """

    def __init__(
        self, site: Site, insecure: bool = False, log_dir: Path | None = None, max_wait_seconds: float | None = None
    ) -> None:
        self.site = site
        self.command = supernode_command(site, insecure, max_wait_seconds)
        self.env = node_environment(site)
        self.log_dir = log_dir
        self.stopping = False
        self.supernode: subprocess.Popen | None = None
        self.gate: subprocess.Popen | None = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)

    def _log(self, name: str):
        return (self.log_dir / name).open("ab") if self.log_dir is not None else None

    def launch(self) -> None:
        """Start the SuperNode, then the gate attached to it."""
        out = self._log("supernode.log")
        self.supernode = subprocess.Popen(
            self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None
        )
        gate_out = self._log("gate.log")
        self.gate = subprocess.Popen(
            gate_command(self.site, self.supernode.pid),
            env=self.env,
            stdout=gate_out,
            stderr=subprocess.STDOUT if gate_out else None,
        )
        for f in (out, gate_out):
            if f is not None:
                f.close()  # the children hold their own descriptors

    def supervise(self, rejoin_seconds: float, retry_seconds: float = 5.0) -> int:
        """Keep the node up until stopped: start it again after a failure (see the class docstring);
        give up when it has kept failing for ``rejoin_seconds``. The SuperNode's last exit code."""
        failing_since: float | None = None
        while True:
            started = time.monotonic()
            assert self.supernode is not None
            code = self.supernode.wait()
            self._stop(self.gate)
            if self.stopping or code == 0:
                return code
            now = time.monotonic()
            if now - started > 60:
                failing_since = None  # it had been up: a new failure
            failing_since = failing_since if failing_since is not None else started
            if now - failing_since > rejoin_seconds:
                return code
            time.sleep(retry_seconds)
            if self.stopping:
                return code
            self.launch()

    def request_stop(self) -> None:
        """Ask the processes to stop, from a signal handler: only flags and signals, no waiting
        (the supervising loop may be inside ``wait()`` on the same process)."""
        self.stopping = True
        for proc in (self.gate, self.supernode):
            if proc is not None and proc.returncode is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping = True
        for proc in (self.gate, self.supernode):
            self._stop(proc, timeout)

    @staticmethod
    def _stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_site(
    site: Site, insecure: bool = False, log_dir: Path | None = None, max_wait_seconds: float | None = None
) -> SiteNode:
    """Start ``site``'s SuperNode and app gate; their output goes to ``log_dir`` (or this console)."""
    node = SiteNode(site, insecure, log_dir, max_wait_seconds)
    node.launch()
    return node
