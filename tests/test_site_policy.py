"""The site decides: a hospital runs a server's request only when it meets the site's own policy,
refuses otherwise with a reason, and the run folder records the refusal."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import tiny_config

from fedsynth.config import load_config
from fedsynth.federation.server import run_federation
from fedsynth.hospital.plan import resolve_plan
from fedsynth.privacy.accounting import MechanismEvent
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.simulation.audit import audit_run
from fedsynth.simulation.inprocess import InProcessTransport
from fedsynth.simulation.sites import prepare_sites
from fedsynth.site.config import write_site
from fedsynth.site.policy import SitePolicy

TRAIN = ["train.rounds_autoencoder=1", "train.rounds_gan=1", "train.local_steps_autoencoder=5"]


def plan(overrides: list[str], policy: SitePolicy, records: int = 500, earlier: list | None = None):
    cfg = load_config(None, TRAIN + overrides)
    ledger = PrivacyLedger(cfg.privacy.delta, "rdp", list(earlier or []))
    return resolve_plan(cfg.privacy, cfg.train, policy, records, ledger, "run-b")


@pytest.mark.parametrize(
    ("request_", "policy", "reason"),
    [
        (["privacy.enabled=false"], SitePolicy(), "requires DP"),
        (["privacy.noise_multiplier=0.8"], SitePolicy(min_noise_multiplier=1.0), "below the site's minimum"),
        (["privacy.sample_rate=0.3"], SitePolicy(max_sample_rate=0.1), "exceeds the site's maximum"),
        (["privacy.target_epsilon=20"], SitePolicy(lifetime_epsilon_budget=10), "exceeds the site's lifetime"),
        (["privacy.delta=1e-4"], SitePolicy(), "exceeds the site's ceiling"),
        (["privacy.reproducible_noise=true"], SitePolicy(), "forbids reproducible noise"),
        (["privacy.sample_rate=0"], SitePolicy(record_count="private"), "explicit privacy.sample_rate"),
    ],
    ids=["dp-off", "lower-sigma", "larger-sample-rate", "larger-budget", "larger-delta", "reproducible", "q-from-n"],
)
def test_a_request_looser_than_the_policy_is_refused(request_, policy, reason) -> None:
    result = plan(request_, policy)
    assert isinstance(result, str) and reason in result


def test_a_request_at_least_as_strict_runs_and_the_site_sets_its_clip() -> None:
    result = plan(["privacy.noise_multiplier=1.5", "privacy.max_grad_norm=2.0"], SitePolicy(max_grad_norm=0.5))
    assert not isinstance(result, str)
    assert result.noise_multiplier == 1.5 and result.max_grad_norm == 0.5 and result.private
    assert result.record_count is None and result.relation == "add-remove"
    public = plan(["privacy.sample_rate=0"], SitePolicy(record_count="public"), records=400)
    assert not isinstance(public, str)
    assert public.record_count == 400 and public.relation == "replace-one"
    assert public.sample_rate == pytest.approx(64 / 400)


def test_the_lifetime_budget_counts_earlier_runs() -> None:
    fresh = plan(["privacy.target_epsilon=8"], SitePolicy(lifetime_epsilon_budget=9))
    assert not isinstance(fresh, str)
    earlier = [dataclasses.replace(e, run="run-a") for e in _history_of(fresh)]
    again = plan(["privacy.target_epsilon=8"], SitePolicy(lifetime_epsilon_budget=9), earlier=earlier)
    assert isinstance(again, str) and "lifetime epsilon" in again and "earlier runs" in again


def _history_of(p) -> list[MechanismEvent]:
    return [p.event("autoencoder", 1, 5), p.event("gan", 2, 50)]


def test_a_refusing_hospital_is_recorded_in_the_run_folder(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", "privacy.noise_multiplier=1.0")
    schema, sites = prepare_sites(cfg, late_seconds=0.0)
    strict = dataclasses.replace(sites[2].config, policy=SitePolicy(min_noise_multiplier=5.0))
    sites[2] = write_site(strict, sites[2].file)
    run_federation(cfg, schema, InProcessTransport.from_sites(sites))
    summary = audit_run(cfg)
    run = tmp_path / "run"
    rounds = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    server = [x for x in rounds if x["kind"] == "server"]
    assert all("below the site's minimum 5" in r["refused"]["2"] and sorted(r["accepted"]) == [0, 1] for r in server)
    privacy = json.loads((run / "privacy.json").read_text())
    assert [r["round"] for r in privacy["refusals"]["2"]] == [1, 2, 3]
    assert "2" not in privacy["hospitals"] and 2 in privacy["never_trained"]
    assert "below the site's minimum" in summary["refusals"]["2"][0]["reason"]


def test_a_run_that_every_hospital_refuses_fails_at_once_with_their_reasons(tmp_path: Path) -> None:
    from fedsynth.federation.coordinator import EveryHospitalRefused
    from fedsynth.simulation import simulate_in_process

    with pytest.raises(EveryHospitalRefused, match="site policy requires DP"):
        simulate_in_process(tiny_config(tmp_path / "run", "privacy.enabled=false"))
