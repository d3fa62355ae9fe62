"""A real consortium on 127.0.0.1 for the deployment tests: keys, SuperLink, sites, runs.

Every process is a real Flower process (flower-superlink, flower-supernode with the site's app
gate, flwr-serverapp/flwr-clientapp), started and stopped here in its own process group.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import TINY

from fedsynth.consortium import create_consortium
from fedsynth.consortium.coordinator import app_hash, register_hospital, superlink_command, write_connection
from fedsynth.site.config import SITE_FILE, Site, load_site, write_site
from fedsynth.site.node import NodeConfig
from fedsynth.site.ring import RingSealing

ROOT = Path(__file__).resolve().parents[1]
FEDSYNTH = str(Path(sys.executable).parent / "fedsynth")
CONNECTION = "loopback"

#: Two rounds of DP-SGD training (one per phase), tiny networks; the sites allow several runs.
DEPLOY = [*TINY, "train.rounds_gan=1", "federation.round_timeout=240", "site_policy.lifetime_epsilon_budget=100"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class SiteProcess:
    """A running ``fedsynth site start`` (the SuperNode and app gate are its children)."""

    site: Site
    proc: subprocess.Popen

    def kill(self) -> None:
        """SIGKILL the whole site: supervisor, SuperNode, gate (a crash or a power cut)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()


class Loopback:
    """Keys, a TLS SuperLink with node authentication, and N prepared sites under ``root``."""

    def __init__(self, root: Path, hospitals: int = 3, *config: str) -> None:
        self.root = root
        self.hospitals = hospitals
        self.home = root / "flwr-home"
        self.home.mkdir(parents=True)
        self.env = {
            **os.environ,
            "FLWR_HOME": str(self.home),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        self.keys = create_consortium(root / "keys", hospitals)
        self.port = free_port()
        self.database = root / "coordinator" / "superlink.db"
        self.database.parent.mkdir(parents=True)
        self.link: subprocess.Popen | None = None
        self.nodes: dict[int, SiteProcess] = {}
        self.registry = root / "coordinator" / "nodes.toml"
        self.config = [*DEPLOY, f"federation.num_hospitals={hospitals}", *config]
        self.prepared = root / "prepared"
        subprocess.run(
            [FEDSYNTH, "prepare", "--out", str(self.prepared), *sum((["--set", s] for s in self.config), [])],
            check=True,
            capture_output=True,
            env=self.env,
            timeout=120,
        )
        # The release the sites reviewed: a frozen copy of the app (the checkout may change meanwhile).
        self.app = root / "app"
        for part in ("fedsynth", "clients", "server"):
            shutil.copytree(ROOT / part, self.app / part, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copyfile(ROOT / "pyproject.toml", self.app / "pyproject.toml")
        self.app_hash = app_hash(self.app)

    # -- coordinator ---------------------------------------------------------------------------
    def start_link(self) -> None:
        command = superlink_command(self.database, self.root / "keys" / "coordinator", port=self.port)
        log = (self.root / "superlink.log").open("ab")
        self.link = subprocess.Popen(
            command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_for(self._link_up, 60, "the SuperLink to listen")
        write_connection(
            CONNECTION, f"127.0.0.1:{self.port}", self.root / "keys" / "coordinator" / "ca.pem", home=self.home
        )

    def _link_up(self) -> bool:
        assert self.link is not None
        if self.link.poll() is not None:
            raise AssertionError(f"SuperLink exited: {(self.root / 'superlink.log').read_text()[-2000:]}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop_link(self) -> None:
        if self.link is not None and self.link.poll() is None:
            os.killpg(self.link.pid, signal.SIGKILL)
            self.link.wait()

    def register(self, hospitals: list[int] | None = None) -> None:
        for h in range(self.hospitals) if hospitals is None else hospitals:
            register_hospital(h, self.keys.hospitals[h].directory / "node.pub", self.registry, CONNECTION, env=self.env)

    # -- sites ---------------------------------------------------------------------------------
    def site_file(self, hospital: int, approved: tuple[str, ...] | None = None, key_of: int | None = None) -> Path:
        """Hospital ``hospital``'s prepared site file with a [node] table for this SuperLink."""
        path = self.prepared / "sites" / f"hospital-{hospital}" / SITE_FILE
        site = load_site(path)
        keys = self.keys.hospitals[hospital if key_of is None else key_of].directory
        node = NodeConfig(
            superlink=f"127.0.0.1:{self.port}",
            root_certificates=str(keys / "ca.pem"),
            node_key=str(keys / "node.key"),
            runtime_port=free_port(),
            approved_apps=(self.app_hash,) if approved is None else approved,
        )
        write_site(dataclasses.replace(site.config, node=node, ring=self.ring_sealing(hospital)), path)
        return path

    def ring_sealing(self, hospital: int) -> RingSealing:
        """The site's ring key and its pinned ring neighbours' public keys (from the key layout)."""
        n = self.hospitals
        neighbours = sorted({(hospital - 1) % n, (hospital + 1) % n} - {hospital})
        keys = self.keys.hospitals
        peers = tuple(f"{h}:{(keys[h].directory / 'ring.pub').read_text().strip()}" for h in neighbours)
        return RingSealing(key=str(keys[hospital].directory / "ring.key"), peers=peers)

    def start_site(self, hospital: int, **site_options) -> SiteProcess:
        """``fedsynth site start`` for hospital ``hospital``, in its own process group."""
        site = load_site(self.site_file(hospital, **site_options))
        command = [FEDSYNTH, "site", "start", str(site.file), "--log-dir", str(self.root / f"site-{hospital}")]
        log = (self.root / f"site-{hospital}.log").open("ab")
        proc = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.nodes[hospital] = SiteProcess(site, proc)
        return self.nodes[hospital]

    def site_log(self, hospital: int) -> str:
        folder = self.root / f"site-{hospital}"
        return "".join(p.read_text(errors="replace") for p in sorted(folder.glob("*.log")))

    # -- runs ----------------------------------------------------------------------------------
    def _run_command(self, out: Path, extra: tuple[str, ...], resume: bool = False) -> list[str]:
        command = [FEDSYNTH, "coordinator", "run", "--out", str(out), "--registry", str(self.registry)]
        command += ["--connection", CONNECTION, "--app-dir", str(self.app)]
        if resume:
            return [*command, "--resume"]
        command += ["--schema", str(self.prepared / "schema.json")]
        for setting in [*self.config, *extra]:
            command += ["--set", setting]
        return command

    def run(self, out: Path, *extra: str, resume: bool = False, timeout: float = 400) -> subprocess.CompletedProcess:
        """``fedsynth coordinator run`` to the end (streams the run's logs)."""
        return subprocess.run(
            self._run_command(out, extra, resume), env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def launch(self, out: Path, *extra: str) -> subprocess.Popen:
        """``fedsynth coordinator run`` in the background (its output in ``root/run.log``)."""
        log = (self.root / "run.log").open("ab")
        return subprocess.Popen(self._run_command(out, extra), env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def stop_run(self) -> None:
        """``flwr stop`` the run launched last (its Flower run id is in ``root/run.log``)."""
        started = re.findall(r"Successfully started run (\d+)", (self.root / "run.log").read_text())
        if started:
            subprocess.run(
                [str(Path(sys.executable).parent / "flwr"), "stop", started[-1], CONNECTION],
                env=self.env,
                capture_output=True,
                timeout=60,
                check=False,
            )

    def close(self) -> None:
        for node in self.nodes.values():
            node.stop(timeout=5)
        self.stop_link()
