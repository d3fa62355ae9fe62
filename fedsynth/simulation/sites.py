"""The simulation as data owner: pool, split and partition the records, and write one site per
simulated hospital.

A simulated hospital is a real site whose site file the simulation wrote: ``sites/hospital-i/``
holds its records (``data.npz``, only its own partition), its ``site.toml`` (policy from the run
configuration's ``[site_policy]``, device, simulated faults) and, once it trains, its state and
ledger. The consortium's public schema goes to ``schema.json``; the server reads only that.

The ``sites/`` folder is site-private: it holds real records and must stay inside the data owners'
walls (a README in the folder says so).
"""

from __future__ import annotations

from pathlib import Path

from fedsynth.config.schema import RunConfig
from fedsynth.data import FederatedData, load_federation
from fedsynth.data.records import Schema
from fedsynth.data.records_file import save_records
from fedsynth.errors import ConfigError
from fedsynth.runfolder import RunFolder
from fedsynth.simulation.faults import site_faults
from fedsynth.site.config import SITE_FILE, Site, SiteConfig, load_site, write_site

SITES_README = """SITE-PRIVATE: simulated hospitals' own disks.

Each hospital-i/ folder is what one simulated hospital keeps inside its walls: its patient records
(data.npz), its site file (site.toml: privacy policy, device, simulated faults), its privacy ledger
and per-run state. These files hold real records; do not share them. The server of the run never
read them: it worked from ../schema.json and the hospitals' replies.
"""

#: Extra seconds a "late" hospital sleeps beyond the server's round timeout (Flower engine).
LATE_MARGIN_SECONDS = 2.0


def site_file(sites_dir: Path, hospital_id: int) -> Path:
    return sites_dir / f"hospital-{hospital_id}" / SITE_FILE


def prepare_sites(config: RunConfig, late_seconds: float) -> tuple[Schema, dict[int, Site]]:
    """Write the public schema and every simulated hospital's site (records, site file); returns
    the schema and the sites. ``late_seconds``: how long a "late" hospital sleeps (0: in-process)."""
    run = RunFolder(config.out_dir)
    fed: FederatedData = load_federation(config.data, config.federation.num_hospitals, config.seed)
    faults = site_faults(config.faults, config.federation.num_hospitals, late_seconds)
    run.sites_dir.mkdir(parents=True, exist_ok=True)
    (run.sites_dir / "README.txt").write_text(SITES_README)
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
