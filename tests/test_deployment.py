"""A real consortium on loopback: TLS SuperLink with node authentication, 3 hospital SuperNodes.

One consortium (keys, SuperLink, three sites) serves the whole module; the tests run in file order
and the later ones restart or disturb its processes. Every process is a real Flower process.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import check_contract
from loopback import FEDSYNTH, Loopback, wait_for

from fedsynth.config import load_config
from fedsynth.consortium import create_hospital_keys
from fedsynth.consortium.gate import REFUSALS, node_state_dir
from fedsynth.consortium.site_node import start_site
from fedsynth.data.federated import load_federation
from fedsynth.data.records_file import save_records
from fedsynth.hospital.ledger_file import LedgerFile
from fedsynth.site.config import load_site

SEALED_RING = ('federation.strategy="ring"', "federation.ring_sealed=true")


@pytest.fixture(scope="module")
def consortium(tmp_path_factory) -> Loopback:
    lb = Loopback(tmp_path_factory.mktemp("consortium"), 3)
    try:
        lb.start_link()
        lb.register()
        for h in range(3):
            lb.start_site(h)
        yield lb
    finally:
        lb.close()


def _ledger_file(lb: Loopback, hospital: int) -> list[dict]:
    site = load_site(lb.prepared / "sites" / f"hospital-{hospital}" / "site.toml")
    return [e.to_dict() for e in LedgerFile(site.state_path).events()]


def _run_id(run: Path) -> str:
    return json.loads((run / "server" / "run.json").read_text())["run_id"]


def _rounds_done(run: Path) -> set[int]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["round"] for r in rows if r.get("kind") == "hospital"}


def _audit(lb: Loopback, run: Path) -> None:
    done = subprocess.run([FEDSYNTH, "audit", str(run)], env=lb.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _check_run(lb: Loopback, run: Path, done: subprocess.CompletedProcess, rounds: int) -> dict:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rounds"] == rounds and "mcc" not in summary.get("tstr", {})  # no real records here
    _audit(lb, run)  # the loopback sites' records are the simulation's: score them as `flwr run .` runs are
    check_contract(run)
    privacy = json.loads((run / "privacy.json").read_text())
    run_id = _run_id(run)
    for h in range(lb.hospitals):
        _assert_reported_ledger(privacy, h, _ledger_file(lb, h), run_id)
        assert len([e for e in privacy["hospitals"][str(h)]["history"] if e["run"] == run_id]) >= rounds
    return summary


def _assert_reported_ledger(privacy: dict, hospital: int, site_ledger: list[dict], run_id: str) -> None:
    """privacy.json holds what the site reported over the network: exactly its own ledger file, with
    the site's earlier runs on the same records declared as other releases (and composed)."""
    entry = privacy["hospitals"][str(hospital)]
    key = lambda e: json.dumps(e, sort_keys=True)  # noqa: E731
    assert sorted(map(key, entry["history"])) == sorted(map(key, site_ledger))
    assert sorted(map(key, entry["other_releases"])) == sorted(key(e) for e in site_ledger if e["run"] != run_id)


def test_star_and_sealed_ring_run_over_tls_with_registered_nodes(consortium: Loopback, tmp_path: Path) -> None:
    star = tmp_path / "star"
    assert _check_run(consortium, star, consortium.run(star), rounds=2)["strategy"] == "fedavg"
    ring = tmp_path / "ring"
    assert _check_run(consortium, ring, consortium.run(ring, *SEALED_RING), rounds=2)["strategy"] == "ring"
    for run in (star, ring):
        assert (run / "synthetic" / "samples.npz").is_file() and (run / "model" / "weights.npz").is_file()
    lines = [json.loads(x) for x in (ring / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert [sorted(m["accepted"]) for m in lines if m.get("kind") == "server"] == [[0, 1, 2], [0, 1, 2]]
    assert [sorted(m["released"]) for m in lines if m.get("kind") == "release"] == [[0, 1, 2]]


def test_the_imprint_server_recovers_nothing_from_a_sealed_ring(consortium: Loopback, tmp_path: Path) -> None:
    """The red team's weights-only imprint server attacks round 2 of a sealed ring over real
    processes: the replies it would invert are ciphertext, and the weights it plants are refused."""
    cfg = load_config(None, consortium.config)
    aux = tmp_path / "aux.npz"
    save_records(load_federation(cfg.data, cfg.federation.num_hospitals, cfg.seed).test, aux)
    run = tmp_path / "attacked"
    attack = ['attack.threat_model="weights-only"', f'attack.auxiliary="{aux}"', 'attack.rounds="2"']
    done = consortium.run(run, *SEALED_RING, *attack)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    round2 = [m for m in lines if m.get("kind") == "hospital" and m["round"] == 2]
    assert len(round2) == 3 and all(m["refused"] for m in round2)  # every planted model refused
    assert not any((run / "attack" / "reconstructions").iterdir())


def test_a_tampered_sealed_payload_is_rejected_by_the_receiving_hospital(consortium: Loopback, tmp_path: Path) -> None:
    """The red team's tampering server flips a byte of every sealed model it relays in round 2:
    every hospital it relayed one to refuses, charging nothing; the others train as usual."""
    run = tmp_path / "tampered"
    before = {h: _ledger_file(consortium, h) for h in range(3)}
    done = consortium.run(run, *SEALED_RING, 'attack.threat_model="tamper"', 'attack.rounds="2"')
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    journal = [json.loads(x) for x in (run / "attack" / "journal.jsonl").read_text().splitlines() if x.strip()]
    altered = {j["hospital"] for j in journal if j.get("note") == "relayed model altered"}
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    refused = {m["hospital"] for m in lines if m.get("kind") == "hospital" and m["round"] == 2 and m["refused"]}
    assert len(altered) >= 2 and refused == altered
    assert all(
        "seal check failed" in m["refused"]
        for m in lines
        if m.get("kind") == "hospital" and m["hospital"] in refused and m["round"] == 2
    )
    for h in range(3):  # a refused round is charged nothing
        new = [e["round"] for e in _ledger_file(consortium, h) if e not in before[h]]
        assert new == ([1] if h in refused else [1, 2])


def _foreign_site(lb: Loopback, tmp_path: Path, node_key: Path, approved: tuple[str, ...] | None = None) -> Path:
    """Hospital 2's records and policy under a site file of its own (own state, given key)."""
    source = load_site(lb.site_file(2, approved=approved))
    text = source.file.read_text()
    text = text.replace(str(source.path_of(source.config.node.node_key)), str(node_key))
    text = text.replace('data = "data.npz"', f'data = "{source.data_path}"')
    text = text.replace('state_dir = "state"', f'state_dir = "{tmp_path / "state"}"')
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def test_unregistered_and_plaintext_nodes_are_refused(consortium: Loopback, tmp_path: Path) -> None:
    stranger = create_hospital_keys(tmp_path / "stranger-keys", 7, consortium.root / "keys" / "ca" / "ca.pem")
    site = load_site(_foreign_site(consortium, tmp_path, stranger.node.private_path))
    for insecure in (False, True):  # a valid but unregistered key; then no TLS at all
        node = start_site(site, insecure=insecure, log_dir=tmp_path / f"log-{insecure}", max_wait_seconds=8)
        try:
            code = node.supernode.wait(timeout=120)
        finally:
            node.stop(timeout=5)
        assert code != 0, f"a node connected with insecure={insecure}"
    assert all(consortium.nodes[h].proc.poll() is None for h in range(3))  # the members are unaffected


def test_site_refuses_an_app_bundle_it_did_not_approve(consortium: Loopback, tmp_path: Path) -> None:
    """Hospital 2 restarts approving only another bundle: its gate refuses the run's bundle."""
    consortium.nodes[2].stop(timeout=5)
    node = consortium.start_site(2, approved=("0" * 64,))
    refusals = node_state_dir(node.site) / REFUSALS
    ledger_before = _ledger_file(consortium, 2)
    launched = consortium.launch(tmp_path / "refused")
    try:
        wait_for(refusals.is_file, 400, "hospital 2 to refuse the bundle")  # it rejoins first
        record = json.loads(refusals.read_text().splitlines()[0])
        assert record["app_hash"] == consortium.app_hash and "not approved" in record["reason"]
        assert _ledger_file(consortium, 2) == ledger_before  # nothing of the bundle ran at the site
    finally:
        launched.kill()
        launched.wait()
        consortium.stop_run()
        consortium.nodes[2].stop(timeout=5)
        consortium.start_site(2)


def test_a_node_and_the_superlink_killed_mid_run_and_restarted(consortium: Loopback, tmp_path: Path) -> None:
    """Hospital 1's node is killed after round 1 and started again: it rejoins under its registered
    key with its ledger intact. Then the SuperLink (and the ServerApp it runs) is killed after
    round 2 and restarted with its database: the run resumes from its checkpoint and finishes."""
    run = tmp_path / "restarts"
    launched = consortium.launch(run, "train.rounds_gan=2", "federation.round_timeout=90")
    try:
        wait_for(lambda: 1 in _rounds_done(run), 300, "round 1")
        consortium.nodes[1].kill()
        kept = _ledger_file(consortium, 1)
        consortium.start_site(1)
        wait_for(lambda: 2 in _rounds_done(run), 300, "round 2")
        consortium.stop_link()  # SIGKILL: the SuperLink and the ServerApp it started
        launched.wait(timeout=60)
        consortium.start_link()  # same database and port: the registered nodes reconnect
        done = consortium.run(run, resume=True)
    finally:
        if launched.poll() is None:
            launched.kill()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _ledger_file(consortium, 1)[: len(kept)] == kept  # nothing the site had charged was lost
    mine = [e for e in _ledger_file(consortium, 1) if e["run"] == _run_id(run)]
    assert mine and mine[-1]["round"] == 3  # hospital 1 rejoined and trained the last round
    assert _rounds_done(run) == {1, 2, 3}
    _audit(consortium, run)
    check_contract(run)
    privacy = json.loads((run / "privacy.json").read_text())
    for h in range(3):
        _assert_reported_ledger(privacy, h, _ledger_file(consortium, h), _run_id(run))
