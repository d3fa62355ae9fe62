"""The site file: a hospital's own configuration (a local TOML file the hospital owns).

::

    hospital_id = 0
    data = "data.npz"          # fedsynth records file, relative to this file
    state_dir = "state"        # ledger, per-run state and logs, relative to this file
    device = "auto"            # auto | cpu | cuda[:N]

    [policy]                   # fedsynth.site.policy.SitePolicy
    require_dp = true
    lifetime_epsilon_budget = 10.0
    ...

    [faults]                   # simulation only: fedsynth.site.faults.SiteFaults
    late = "2"

    [node]                     # a real site only: fedsynth.site.node.NodeConfig
    superlink = "coordinator.example.org:9092"

    [ring]                     # sealed ring payloads: fedsynth.site.ring.RingSealing
    key = "ring.key"
    peers = ["1:BASE64_PUBLIC_KEY"]

Everything a hospital needs to take part comes from here: where its records are, where it keeps
its state, which device it trains on and what it allows. The server's run configuration carries
none of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fedsynth.config.loading import build_dataclass, read_toml, to_nested
from fedsynth.errors import ConfigError
from fedsynth.site.faults import SiteFaults
from fedsynth.site.node import NodeConfig
from fedsynth.site.policy import SitePolicy
from fedsynth.site.ring import RingSealing

SITE_FILE = "site.toml"


@dataclass(frozen=True)
class SiteConfig:
    """The contents of a site file (paths as written, relative to the file)."""

    hospital_id: int
    data: str
    state_dir: str = "state"
    device: str = "auto"
    policy: SitePolicy = field(default_factory=SitePolicy)
    faults: SiteFaults = field(default_factory=SiteFaults)
    node: NodeConfig = field(default_factory=NodeConfig)
    ring: RingSealing = field(default_factory=RingSealing)

    def __post_init__(self) -> None:
        if self.hospital_id < 0:
            raise ConfigError(f"hospital_id = {self.hospital_id}: expected an id >= 0")
        if not self.data.strip():
            raise ConfigError("data: empty (expected the path of the site's records file)")
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ConfigError(f"device = {self.device!r}: expected 'auto', 'cpu' or 'cuda[:N]'")


@dataclass(frozen=True)
class Site:
    """A loaded site file with its paths resolved."""

    config: SiteConfig
    file: Path

    @property
    def hospital_id(self) -> int:
        return self.config.hospital_id

    @property
    def policy(self) -> SitePolicy:
        return self.config.policy

    @property
    def data_path(self) -> Path:
        return (self.file.parent / self.config.data).resolve()

    @property
    def state_path(self) -> Path:
        return (self.file.parent / self.config.state_dir).resolve()

    @property
    def ring_key_path(self) -> Path | None:
        """The site's ring private key (``[ring] key``), resolved; None when the site has none."""
        return self.path_of(self.config.ring.key) if self.config.ring.key.strip() else None

    def path_of(self, relative: str) -> Path:
        """A path the site file names, resolved against the site file's folder."""
        return (self.file.parent / relative).resolve()


def load_site(path: str | Path) -> Site:
    """Read and validate a site file; errors name the file and the key."""
    path = Path(path)
    nested = read_toml(path, "site file")
    try:
        config = build_dataclass(SiteConfig, nested)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
    return Site(config, path.resolve())


def write_site(config: SiteConfig, path: str | Path) -> Site:
    """Write ``config`` as a site file at ``path``."""
    import tomli_w

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(to_nested(config)))
    return Site(config, path.resolve())
