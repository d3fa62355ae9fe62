"""The hospital is the trust boundary: randomness nobody else knows, a redone round that never
reuses noise, a ledger that keeps every run, a record count that stays inside, replies that carry
nothing un-noised, and a server that never opens patient data."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, tiny_config
from sites import job_for, service_for

from fedsynth.config import load_config
from fedsynth.data.phantom import make_phantom
from fedsynth.federation import wire
from fedsynth.federation.server import run_federation
from fedsynth.hospital.plan import resolve_plan
from fedsynth.privacy.accounting import compute_epsilon
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.protocol import RoundInstruction
from fedsynth.simulation import simulate_in_process
from fedsynth.simulation.inprocess import InProcessTransport
from fedsynth.simulation.sites import prepare_sites

SMALL = [
    "train.rounds_autoencoder=1",
    "train.rounds_gan=2",
    "train.local_steps_autoencoder=3",
    "train.local_steps_gan=3",
    "train.generator_steps_per_round=2",
    "train.batch_size=16",
    "model.image_channels=8",
    "privacy.sample_rate=0.2",
]
REPRODUCIBLE = ["privacy.reproducible_noise=true"]


@pytest.fixture(scope="module")
def records():
    return make_phantom(80, 2, 32, seed=0)


def round_of(cfg, records, r: int, run_id: str = "run-a", **fields) -> RoundInstruction:
    return RoundInstruction(r, cfg.train.phase_of_round(r), job=job_for(cfg, records, run_id), **fields)


def differs(a: dict, b: dict) -> bool:
    return any(not np.array_equal(a[k], b[k]) for k in a)


# -- 1. secret randomness -----------------------------------------------------------------------
def test_two_sites_with_the_same_records_and_seed_release_different_weights(records, tmp_path) -> None:
    cfg = load_config(None, SMALL)
    one = service_for(tmp_path / "a", records).handle(round_of(cfg, records, 1))
    two = service_for(tmp_path / "b", records).handle(round_of(cfg, records, 1))
    assert one.accepted and two.accepted
    assert differs(one.weights, two.weights), "the DP noise or the sampled batches repeated"


def test_running_the_same_config_twice_releases_different_weights(tmp_path: Path) -> None:
    for name in ("first", "second"):
        simulate_in_process(tiny_config(tmp_path / name))
    a, b = (np.load(tmp_path / name / "model" / "weights.npz") for name in ("first", "second"))
    assert any(not np.array_equal(a[k], b[k]) for k in a.files)
    assert not json.loads((tmp_path / "first" / "privacy.json").read_text())["reproducible_noise"]


def test_reproducible_noise_is_refused_unless_the_site_allows_it_and_is_labelled(records, tmp_path) -> None:
    cfg = load_config(None, SMALL + REPRODUCIBLE)
    refused = service_for(tmp_path / "strict", records).handle(round_of(cfg, records, 1))
    assert not refused.accepted and "forbids reproducible noise" in refused.refused
    allowed = [service_for(tmp_path / n, records, allow_reproducible_noise=True) for n in ("a", "b")]
    one, two = (s.handle(round_of(cfg, records, 1)) for s in allowed)
    assert not differs(one.weights, two.weights)  # that is what the mode is for, and why it is labelled
    assert one.plan["reproducible_noise"] is True


# -- 2. a redone round never reuses randomness ----------------------------------------------------
def test_a_redone_round_draws_new_noise_even_in_reproducible_mode(records, tmp_path) -> None:
    """The worst case: seeded noise. A hospital asked to redo round 2 with another instruction
    restores round 1's state but must not repeat round 2's noise (the ledger charges both)."""
    from fedsynth.hospital.service import HospitalService

    cfg = load_config(None, SMALL + REPRODUCIBLE)
    service = service_for(tmp_path, records, allow_reproducible_noise=True)
    service.handle(round_of(cfg, records, 1))
    first = service.handle(round_of(cfg, records, 2))
    redo = HospitalService(service.site).handle(round_of(cfg, records, 2, merge_rule="median"))
    assert [e["round"] for e in redo.ledger["history"]] == [1, 2, 2]
    assert differs(first.weights, redo.weights), "the redone round reused its noise"


# -- 3. a reused state folder keeps every ledger event ---------------------------------------------
def test_two_runs_on_one_site_keep_every_event_and_their_own_state(records, tmp_path) -> None:
    cfg = load_config(None, SMALL + ["train.rounds_gan=5", "privacy.noise_multiplier=1.0"])
    service = service_for(tmp_path, records, lifetime_epsilon_budget=0.0)
    for run_id in ("run-a", "run-b"):
        replies = [service.handle(round_of(cfg, records, r, run_id)) for r in range(1, 7)]
        assert all(r.accepted for r in replies)
    events = service.ledger_file.events()
    assert [e.run for e in events] == ["run-a"] * 6 + ["run-b"] * 6
    assert [e.round for e in events] == list(range(1, 7)) * 2
    assert (tmp_path / "state" / "runs" / "run-a").is_dir() and (tmp_path / "state" / "runs" / "run-b").is_dir()
    # The reported ledger is the lifetime one: both runs' patients are the same patients.
    last = replies[-1]
    assert len(last.ledger["history"]) == 12
    both = compute_epsilon(events, cfg.privacy.delta)
    assert last.metrics["epsilon"] == pytest.approx(both) and both > last.metrics["epsilon_run"]


# -- 5. the record count stays inside the site (or is declared public) ---------------------------
def test_a_private_record_count_does_not_shape_what_leaves_the_site(records, tmp_path) -> None:
    cfg = load_config(None, SMALL + REPRODUCIBLE)
    smaller = records.subset(np.arange(len(records) - 1))
    replies = [
        service_for(tmp_path / name, data, allow_reproducible_noise=True).handle(round_of(cfg, data, 1))
        for name, data in (("n", records), ("n-1", smaller))
    ]
    for reply in replies:
        assert reply.num_examples is None
        assert "num-examples" not in wire.reply_to_content(reply).metric_records["metrics"]
    assert replies[0].plan == replies[1].plan and replies[0].ledger == replies[1].ledger
    assert replies[0].metrics == replies[1].metrics
    assert replies[0].plan["record_count"] == "private" and replies[0].ledger["neighbouring_relation"] == "add-remove"


def test_a_public_record_count_is_declared_and_accounted_under_replace_one(records, tmp_path) -> None:
    import dp_accounting as dpa

    cfg = load_config(None, SMALL + ["privacy.sample_rate=0"])
    reply = service_for(tmp_path, records, record_count="public").handle(round_of(cfg, records, 1))
    assert reply.num_examples == len(records) and reply.plan["record_count"] == len(records)
    assert reply.ledger["neighbouring_relation"] == "replace-one"
    (event,) = reply.ledger["history"]
    tight = dpa.pld.PLDAccountant(dpa.NeighboringRelation.REPLACE_ONE)
    tight.compose(
        dpa.SelfComposedDpEvent(
            dpa.PoissonSampledDpEvent(event["sample_rate"], dpa.GaussianDpEvent(event["noise_multiplier"])),
            event["steps"],
        )
    )
    assert reply.metrics["epsilon"] >= 0.98 * tight.get_epsilon(cfg.privacy.delta)


# -- 7. nothing un-noised leaves the site ----------------------------------------------------------
def test_replacing_one_record_changes_nothing_in_a_reply_but_the_dp_weights(records, tmp_path) -> None:
    cfg = load_config(None, SMALL + REPRODUCIBLE)
    other = make_phantom(81, 2, 32, seed=5)
    replaced = records.subset(np.arange(len(records)))
    replaced.images = replaced.images.copy()
    replaced.clinical = replaced.clinical.copy()
    replaced.images[0], replaced.clinical[0] = other.images[80], other.clinical[80]
    services = [
        service_for(tmp_path / name, data, allow_reproducible_noise=True)
        for name, data in (("d", records), ("d-prime", replaced))
    ]
    for r in (1, 2):
        a, b = (s.handle(round_of(cfg, records, r)) for s in services)
        assert set(a.metrics) <= {"epsilon", "epsilon_run", "steps"}
        assert (a.metrics, a.ledger, a.plan, a.num_examples) == (b.metrics, b.ledger, b.plan, b.num_examples)
    # The losses on real records exist, and stay in the site's own log.
    log = services[0].site.state_path / "runs" / "run-a" / "site-log.jsonl"
    trained = [json.loads(x) for x in log.read_text().splitlines() if '"trained"' in x]
    assert "ae_loss" in trained[0] and "d_loss" in trained[1]


# -- 9. the server never opens patient data --------------------------------------------------------
def test_the_server_runs_from_the_public_schema_alone(tmp_path: Path, monkeypatch) -> None:
    import fedsynth.data.federated as federated
    import fedsynth.data.records_file as records_file

    cfg = tiny_config(tmp_path / "run")
    schema, sites = prepare_sites(cfg, late_seconds=0.0)
    transport = InProcessTransport.from_sites(sites)
    for service in transport.services.values():
        assert len(service.data) > 0  # each site has read its own records
    for site in sites.values():  # and nobody can read them again during the run
        site.data_path.rename(site.data_path.with_suffix(".away"))

    def forbidden(*args, **kwargs):
        raise AssertionError("the server side opened patient data")

    monkeypatch.setattr(federated, "load_federation", forbidden)
    monkeypatch.setattr(records_file, "load_records", forbidden)
    blind = tiny_config(tmp_path / "run", 'data.source="npz"', 'data.path="/nonexistent/records.npz"')
    summary = run_federation(blind, schema, transport)
    assert summary["rounds"] == 3 and summary["private"]
    assert (tmp_path / "run" / "synthetic" / "samples.npz").exists()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_cycle_between_hospital_and_federation_and_the_library_never_imports_the_apps() -> None:
    package = ROOT / "fedsynth"
    for path in package.rglob("*.py"):
        imported = _imports(path)
        assert not any(n.split(".")[0] in ("clients", "server") for n in imported), path
        where = path.relative_to(package).parts[0]
        if where == "hospital":
            assert not any(n.startswith("fedsynth.federation") for n in imported), path
        if where == "federation":
            assert not any(
                n.startswith(("fedsynth.hospital", "fedsynth.simulation", "fedsynth.data.federated")) for n in imported
            ), path
            assert "fedsynth.data" not in imported, path


def test_plan_never_reads_the_seed() -> None:
    """Secret mode: nothing in the plan or its randomness depends on the run seed."""
    cfg_a, cfg_b = (load_config(None, SMALL + [f"seed={s}"]) for s in (0, 1))
    plans = [
        resolve_plan(c.privacy, c.train, c.site_policy, 80, PrivacyLedger(c.privacy.delta), "run")
        for c in (cfg_a, cfg_b)
    ]
    assert plans[0] == plans[1] and not plans[0].reproducible
