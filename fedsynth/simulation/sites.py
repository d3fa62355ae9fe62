"""The simulation as data owner: pool, split and partition the records, and write one site per
simulated hospital.

A simulated hospital is a real site whose site file the simulation wrote: ``sites/hospital-i/``
holds its records (``data.npz``, only its own partition), its ``site.toml`` (policy from the run
configuration's ``[site_policy]``, device, simulated faults) and, once it trains, its state and
ledger. The consortium's public schema goes to ``schema.json``; the server reads only that.
When the run asks for a sealed ring (``federation.ring_sealed``) each simulated hospital also gets
its own ring key (``ring.key``, private; ``ring.pub``) and its site file pins the public keys of its
ring neighbours (predecessor and successor in the ring order) with ``required = true``, so a sealed
ring runs with no manual step.

The ``sites/`` folder is site-private: it holds real records and must stay inside the data owners'
walls (a README in the folder says so).
"""

from __future__ import annotations

from pathlib import Path

from fedsynth.config.schema import FederationConfig, RunConfig
from fedsynth.consortium.sealing import create_ring_key
from fedsynth.data import FederatedData, load_federation
from fedsynth.data.records import Schema
from fedsynth.data.records_file import save_records
from fedsynth.errors import ConfigError
from fedsynth.runfolder import RunFolder
from fedsynth.simulation.faults import site_faults
from fedsynth.site.config import SITE_FILE, Site, SiteConfig, load_site, write_site
from fedsynth.site.ring import RingSealing

SITES_README = """SITE-PRIVATE: simulated hospitals' own disks.

Each hospital-i/ folder is what one simulated hospital keeps inside its walls: its patient records
(data.npz), its site file (site.toml: privacy policy, device, simulated faults), its privacy ledger
and per-run state, and in a sealed ring its ring key (ring.key: private; ring.pub: public).
These files hold real records; do not share them. The server of the run never read them: it worked
from ../schema.json and the hospitals' replies.
"""

#: Extra seconds a "late" hospital sleeps beyond the server's round timeout (Flower engine).
LATE_MARGIN_SECONDS = 2.0


def site_file(sites_dir: Path, hospital_id: int) -> Path:
    return sites_dir / f"hospital-{hospital_id}" / SITE_FILE


def ring_neighbours(federation: FederationConfig) -> dict[int, list[int]]:
    """Each hospital's neighbours in the ring order: its predecessor and successor (with two
    hospitals, just the other one; with one, none)."""
    order = federation.ring_hospitals()
    n = len(order)
    return {hid: sorted({order[(i - 1) % n], order[(i + 1) % n]} - {hid}) for i, hid in enumerate(order)}


def simulated_ring_sealing(config: RunConfig, sites_dir: Path) -> dict[int, RingSealing]:
    """Every simulated hospital's ``[ring]`` table: a new ring key in its folder (a simulated site's
    disk is rewritten for each new run) and its neighbours' public keys pinned; empty tables when
    the run does not ask for a sealed ring."""
    hospitals = range(config.federation.num_hospitals)
    if not config.federation.ring_sealed:
        return {hid: RingSealing() for hid in hospitals}
    public = {hid: create_ring_key(sites_dir / f"hospital-{hid}", overwrite=True).public_text for hid in hospitals}
    return {
        hid: RingSealing(key="ring.key", peers=tuple(f"{p}:{public[p]}" for p in peers), required=True)
        for hid, peers in ring_neighbours(config.federation).items()
    }


def prepare_sites(config: RunConfig, late_seconds: float) -> tuple[Schema, dict[int, Site]]:
    """Write the public schema and every simulated hospital's site (records, site file); returns
    the schema and the sites. ``late_seconds``: how long a "late" hospital sleeps (0: in-process)."""
    run = RunFolder(config.out_dir)
    fed: FederatedData = load_federation(config.data, config.federation.num_hospitals, config.seed)
    faults = site_faults(config.faults, config.federation.num_hospitals, late_seconds)
    run.sites_dir.mkdir(parents=True, exist_ok=True)
    (run.sites_dir / "README.txt").write_text(SITES_README)
    for hid in range(len(fed.hospitals)):
        (run.sites_dir / f"hospital-{hid}").mkdir(parents=True, exist_ok=True)
    rings = simulated_ring_sealing(config, run.sites_dir)
    sites = {}
    for hid, records in enumerate(fed.hospitals):
        folder = run.sites_dir / f"hospital-{hid}"
        save_records(records, folder / "data.npz")
        sites[hid] = write_site(
            SiteConfig(
                hospital_id=hid,
                data="data.npz",
                state_dir="state",
                device=config.simulation.device,
                policy=config.site_policy,
                faults=faults[hid],
                ring=rings[hid],
            ),
            folder / SITE_FILE,
        )
    run.write_schema(fed.schema)
    return fed.schema, sites


def existing_sites(config: RunConfig) -> tuple[Schema, dict[int, Site]]:
    """The schema and sites a run folder already holds (``--resume``: sites keep their state)."""
    run = RunFolder(config.out_dir)
    schema_path = run.path / "schema.json"
    if not schema_path.exists():
        raise ConfigError(f"{schema_path}: missing (the run folder holds no prepared simulation to resume)")
    schema = Schema.from_dict(run.read_json("schema.json"))
    sites = {}
    for hid in range(config.federation.num_hospitals):
        path = site_file(run.sites_dir, hid)
        if not path.exists():
            raise ConfigError(f"{path}: missing (expected the site file of simulated hospital {hid})")
        sites[hid] = load_site(path)
    return schema, sites
