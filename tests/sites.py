"""Test helpers: a site on disk for a set of records, and a job for a configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fedsynth.config import RunConfig
from fedsynth.data.records import Dataset
from fedsynth.data.records_file import save_records
from fedsynth.federation.server import make_job
from fedsynth.hospital.service import HospitalService
from fedsynth.protocol import Job
from fedsynth.site.config import SITE_FILE, Site, SiteConfig, write_site
from fedsynth.site.faults import SiteFaults
from fedsynth.site.policy import SitePolicy


def write_test_site(
    folder: Path,
    records: Dataset,
    hospital_id: int = 0,
    faults: SiteFaults | None = None,
    **policy: object,
) -> Site:
    """A site file with ``records`` as its data; ``policy`` overrides SitePolicy fields."""
    save_records(records, folder / "data.npz")
    config = SiteConfig(
        hospital_id=hospital_id,
        data="data.npz",
        device="cpu",
        policy=dataclasses.replace(SitePolicy(), **policy),  # type: ignore[arg-type]
        faults=faults or SiteFaults(),
    )
    return write_site(config, folder / SITE_FILE)


def service_for(folder: Path, records: Dataset, hospital_id: int = 0, **policy: object) -> HospitalService:
    return HospitalService(write_test_site(folder, records, hospital_id, **policy))


def job_for(cfg: RunConfig, records: Dataset, run_id: str = "run-a") -> Job:
    return make_job(cfg, records.schema, run_id)
