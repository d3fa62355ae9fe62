"""A sealed ring (``federation.ring_sealed``): the server relays only ciphertext between neighbouring
hospitals and cannot read, alter, replay or substitute a model undetected; the final model comes
from a plaintext release that trains nothing and charges nothing."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import check_contract, tiny_config
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto

from fedsynth.attacks.server import attack_hook
from fedsynth.config import load_config
from fedsynth.data import load_federation
from fedsynth.data.records_file import save_records
from fedsynth.errors import ConfigError
from fedsynth.federation import wire
from fedsynth.federation.checkpoint import ServerCheckpoint
from fedsynth.federation.coordinator import FederationResult
from fedsynth.federation.ring import Ring
from fedsynth.federation.server import make_job, run_federation
from fedsynth.federation.strategy import Send
from fedsynth.federation.transport import Exchange
from fedsynth.hospital.sealed_ring import ModelArchiveError, model_from_bytes, ring_refusal
from fedsynth.hospital.service import HospitalService
from fedsynth.models.architectures import build_architecture
from fedsynth.protocol import RELEASE, HospitalReply, RoundInstruction, SealedModel
from fedsynth.redteam.audit import audit_attack
from fedsynth.simulation.audit import audit_run
from fedsynth.simulation.inprocess import InProcessTransport
from fedsynth.simulation.sites import prepare_sites, ring_neighbours
from fedsynth.site.config import load_site
from fedsynth.site.ring import RingSealing

#: Two hospitals, two rounds (one autoencoder, one GAN), every model sealed.
SEALED = [
    'federation.strategy="ring"',
    "federation.ring_sealed=true",
    "federation.num_hospitals=2",
    "train.rounds_gan=1",
]


@dataclass
class Wave:
    """One wave as the server saw it: what it sent, what came back, and (test instrument only)
    each simulated hospital's ledger length before and after."""

    sends: list[Send]
    replies: list[HospitalReply]
    ledger_before: dict[int, int]
    ledger_after: dict[int, int]

    @property
    def phase(self) -> str:
        return self.sends[0].instruction.phase


@dataclass
class WatchingTransport:
    """The in-process transport with an eye on the wire: records every wave after the wire's
    round trip, and lets a test play a malicious relay (``rewrite`` changes a send before it goes)."""

    inner: InProcessTransport
    rewrite: Callable[[Send], Send] = lambda send: send
    waves: list[Wave] = field(default_factory=list)

    def hospitals(self) -> list[int]:
        return self.inner.hospitals()

    def _ledger_sizes(self) -> dict[int, int]:
        return {hid: len(s.ledger_file.events()) for hid, s in self.inner.services.items()}

    def exchange(self, sends: list[Send], timeout: float) -> Exchange:
        sends = [self.rewrite(s) for s in sends]
        before = self._ledger_sizes()
        out = self.inner.exchange(sends, timeout)
        self.waves.append(Wave(sends, list(out.replies), before, self._ledger_sizes()))
        return out

    def ledgers(self, hospitals: list[int], timeout: float) -> dict[int, dict]:
        return self.inner.ledgers(hospitals, timeout)


def sealed_run(tmp_path: Path, *overrides: str, rewrite: Callable[[Send], Send] | None = None):
    cfg = tiny_config(tmp_path / "run", *SEALED, *overrides)
    schema, sites = prepare_sites(cfg, late_seconds=0.0)
    transport = WatchingTransport(InProcessTransport.from_sites(sites))
    if rewrite is not None:
        transport.rewrite = rewrite
    return cfg, schema, transport


def metrics(run: Path, kind: str) -> list[dict]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x["kind"] == kind]


def ledger_rounds(transport: WatchingTransport, hospital: int) -> list[int]:
    return [e.round for e in transport.inner.services[hospital].ledger_file.events()]


def flip_byte(blob: bytes, position: int) -> bytes:
    return blob[:position] + bytes([blob[position] ^ 0x01]) + blob[position + 1 :]


# -- a sealed ring end to end --------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["sequential", "synchronous"])
def test_a_sealed_ring_completes_and_the_server_sees_only_ciphertext(tmp_path: Path, schedule: str) -> None:
    cfg, schema, transport = sealed_run(tmp_path, f'federation.ring_schedule="{schedule}"')
    summary = run_federation(cfg, schema, transport)
    audit_run(cfg)
    run = tmp_path / "run"
    check_contract(run)

    rounds = [w for w in transport.waves if w.phase != RELEASE]
    (release,) = [w for w in transport.waves if w.phase == RELEASE]
    # Ring rounds: the server sends no weights and receives none; every reply is sealed blobs.
    for wave in rounds:
        for send in wave.sends:
            assert send.instruction.weights is None and send.instruction.merge is None
        for reply in wave.replies:
            assert reply.accepted and reply.weights is None, reply.refused
            assert set(reply.sealed) == {1 - reply.hospital_id}
            for blob in reply.sealed.values():
                with pytest.raises(ModelArchiveError):
                    model_from_bytes(blob)  # not a model archive: ciphertext
    sent_by = {(r.hospital_id, r.server_round, to): b for w in rounds for r in w.replies for to, b in r.sealed.items()}
    relayed = [s for w in rounds for s in w.sends if s.instruction.sealed is not None]
    assert len(relayed) >= 2, "the ring relayed no sealed model"
    for send in relayed:  # relayed unaltered, to the hospital it was sealed for
        sealed = send.instruction.sealed
        assert sealed.blob == sent_by[(sealed.sender_id, sealed.sender_round, send.hospital_id)]

    # The final release: plaintext whole models, nothing trained, nothing charged.
    assert all(r.accepted and r.weights is not None and not r.sealed for r in release.replies)
    assert release.ledger_before == release.ledger_after
    released = {r.hospital_id: r.weights for r in release.replies}
    assert sorted(released) == [0, 1]
    last_blobs = [b for r in rounds[-1].replies for b in r.sealed.values()]
    for weights in released.values():  # the plaintext of the last round's blobs never shows in them
        largest = max(weights, key=lambda k: weights[k].nbytes)
        probe = np.ascontiguousarray(weights[largest]).tobytes()[:64]
        assert not any(probe in blob for blob in last_blobs)

    with np.load(run / "model" / "weights.npz") as saved:  # average of the released models
        for name in saved.files:
            np.testing.assert_allclose(saved[name], (released[0][name] + released[1][name]) / 2, rtol=1e-6, atol=1e-7)
    assert summary["scored_model"].startswith("ring (sealed): average")
    (line,) = metrics(run, "release")
    assert line["round"] == 3 and line["released"] == [0, 1] and line["bytes_up"] > 0
    privacy = json.loads((run / "privacy.json").read_text())
    assert {h: [e["round"] for e in p["history"]] for h, p in privacy["hospitals"].items()} == {
        "0": [1, 2],
        "1": [1, 2],
    }
    for hid, service in transport.inner.services.items():
        assert [e.round for e in service.ledger_file.events()] == [1, 2], hid


# -- tampering and replay ------------------------------------------------------------------------
def test_a_tampered_blob_is_refused_naming_the_sender_and_nothing_is_charged(tmp_path: Path) -> None:
    def tamper(send: Send) -> Send:
        sealed = send.instruction.sealed
        if send.instruction.server_round != 2 or send.hospital_id != 1 or sealed is None:
            return send
        bad = dataclasses.replace(sealed, blob=flip_byte(sealed.blob, len(sealed.blob) // 2))
        return dataclasses.replace(send, instruction=dataclasses.replace(send.instruction, sealed=bad))

    cfg, schema, transport = sealed_run(tmp_path, rewrite=tamper)
    run_federation(cfg, schema, transport)
    run = tmp_path / "run"

    (line,) = [h for h in metrics(run, "hospital") if h["round"] == 2 and h["hospital"] == 1]
    reason = line["refused"]
    assert reason is not None and "hospital 0" in reason and "seal check failed" in reason
    assert "authentication failed" in reason
    (server,) = [r for r in metrics(run, "server") if r["round"] == 2]
    assert server["refused"] == {"1": reason} and server["accepted"] == [0]
    privacy = json.loads((run / "privacy.json").read_text())
    assert {"round": 2, "reason": reason} in privacy["refusals"]["1"]
    assert ledger_rounds(transport, 1) == [1]  # refused before anything was charged
    assert [e["round"] for e in privacy["hospitals"]["1"]["history"]] == [1]
    assert ledger_rounds(transport, 0) == [1, 2]


def test_a_replayed_or_relabelled_blob_is_refused(tmp_path: Path) -> None:
    """Hospital 1 took hospital 0's round-2 model; the relay then offers hospital 0's round-1
    blob: as round 1 (older than what it took) and relabelled as round 3 (the seal is bound to
    round 1). Both are refused before any charge."""
    cfg = tiny_config(tmp_path / "run", *SEALED, "train.rounds_gan=2")
    schema, sites = prepare_sites(cfg, late_seconds=0.0)
    job = make_job(cfg, schema, "run-replay")
    sender, receiver = HospitalService(sites[0]), HospitalService(sites[1])
    first = sender.handle(RoundInstruction(1, "autoencoder", job=job))
    second = sender.handle(RoundInstruction(2, "gan", job=job))
    assert first.accepted and second.accepted and first.weights is None

    def offer(server_round: int, sender_round: int, blob: bytes) -> HospitalReply:
        sealed = SealedModel(0, sender_round, blob)
        return receiver.handle(RoundInstruction(server_round, "gan", job=job, sealed=sealed))

    assert offer(2, 2, second.sealed[1]).accepted
    replay = offer(3, 1, first.sealed[1])
    assert not replay.accepted and "hospital 0" in replay.refused and "replay check failed" in replay.refused
    relabelled = offer(3, 3, first.sealed[1])
    assert not relabelled.accepted and "seal check failed" in relabelled.refused
    assert "another context" in relabelled.refused
    assert [e.round for e in receiver.ledger_file.events()] == [2]


# -- the red team's malicious server ---------------------------------------------------------------
def test_the_imprint_server_recovers_nothing_from_a_sealed_ring(tmp_path: Path) -> None:
    """The weights-only imprint server plants rows in round 2's instructions and inverts what comes
    back. The sites' weight check is off, so only the sealing stands in its way: the replies it
    could invert carry no weights, and every planted model it substitutes is refused."""
    base = tiny_config(tmp_path / "run", *SEALED)
    aux = tmp_path / "aux.npz"
    save_records(load_federation(base.data, base.federation.num_hospitals, base.seed).test, aux)
    cfg, schema, transport = sealed_run(
        tmp_path,
        'attack.threat_model="weights-only"',
        f'attack.auxiliary="{aux}"',
        'attack.rounds="2"',
        "site_policy.check_weights=false",
    )
    run_federation(cfg, schema, transport, hook=attack_hook(cfg))
    run = tmp_path / "run"

    rounds = [w for w in transport.waves if w.phase != RELEASE]
    assert all(r.weights is None for w in rounds for r in w.replies)  # the attack's input never came
    attacked = [w for w in rounds if w.sends[0].instruction.server_round == 2]  # one wave per hospital
    assert sorted(s.hospital_id for w in attacked for s in w.sends) == [0, 1]
    for wave in attacked:
        assert all(s.instruction.weights is not None for s in wave.sends)  # it did substitute weights
        for reply in wave.replies:
            assert not reply.accepted and "a sealed ring takes no weights from the server" in reply.refused
        assert wave.ledger_before == wave.ledger_after
    assert not list((run / "attack" / "reconstructions").iterdir())
    journal = run / "attack" / "journal.jsonl"
    assert not journal.exists() or not any("found" in json.loads(x) for x in journal.read_text().splitlines())
    assert audit_attack(run)["targets"] == {}
    (release,) = [w for w in transport.waves if w.phase == RELEASE]
    assert release.ledger_before == release.ledger_after
    assert all(r.accepted for r in release.replies)


def test_the_tampering_server_is_caught_by_sealing_and_not_without_it(tmp_path: Path) -> None:
    """The red team's ``tamper`` server alters every model it relays in round 2. Sealed, each
    receiver refuses (authentication fails) and charges nothing; unsealed, the altered models are
    merged and trained on without anyone noticing: that is what sealing buys."""
    tamper = ['attack.threat_model="tamper"', 'attack.rounds="2"']
    cfg, schema, transport = sealed_run(tmp_path / "sealed", *tamper)
    run_federation(cfg, schema, transport, hook=attack_hook(cfg))
    (relayed,) = [
        w for w in transport.waves if w.sends[0].instruction.server_round == 2 and w.sends[0].instruction.sealed
    ]
    (reply,) = relayed.replies
    assert not reply.accepted and "seal check failed" in reply.refused
    assert relayed.ledger_before == relayed.ledger_after
    assert "relayed model altered" in (tmp_path / "sealed" / "run" / "attack" / "journal.jsonl").read_text()

    plain = tiny_config(tmp_path / "plain" / "run", *SEALED[:1], *SEALED[2:], *tamper)
    schema, sites = prepare_sites(plain, late_seconds=0.0)
    watch = WatchingTransport(InProcessTransport.from_sites(sites))
    run_federation(plain, schema, watch, hook=attack_hook(plain))
    merged = [w for w in watch.waves if w.sends[0].instruction.server_round == 2 and w.sends[0].instruction.merge]
    assert merged and all(r.accepted for w in merged for r in w.replies)  # silently trained on altered weights


# -- the pieces -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peers", "fragment"),
    [
        (("1",), r"ring.peers\[0\] = '1': expected HOSPITAL_ID:BASE64_PUBLIC_KEY"),
        (("one:AAAA",), r"ring.peers\[0\] = 'one:AAAA': the hospital id 'one' is not an integer"),
        (("1:not base64!",), r"ring.peers\[0\]: hospital 1's ring public key: not base64 text"),
        (("1:AAAA",), r"ring.peers\[0\]: hospital 1's ring public key: decodes to 3 bytes, expected 32"),
    ],
)
def test_bad_pinned_peers_are_named(peers: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        RingSealing(key="ring.key", peers=peers)


def test_a_site_file_pins_its_ring_and_errors_name_file_and_key(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", *SEALED)
    _, sites = prepare_sites(cfg, late_seconds=0.0)
    ring = sites[0].config.ring
    assert ring.required and sites[0].ring_key_path == (sites[0].file.parent / "ring.key").resolve()
    public = (sites[1].file.parent / "ring.pub").read_text().strip()
    assert ring.peers == (f"1:{public}",) and set(ring.pinned()) == {1}
    key = sites[0].config.ring.peers[0]
    text = sites[0].file.read_text()
    sites[0].file.write_text(text.replace(key, f'{key}", "{key}'))
    with pytest.raises(ConfigError, match=r"site.toml: ring.peers\[1\] = .*hospital 1 is pinned twice"):
        load_site(sites[0].file)
    with pytest.raises(ConfigError, match="ring.key: empty, but ring.required = true is set"):
        RingSealing(required=True)


def test_ring_neighbours_are_predecessor_and_successor() -> None:
    def neighbours(*overrides: str) -> dict[int, list[int]]:
        return ring_neighbours(load_config(None, ['federation.strategy="ring"', *overrides]).federation)

    assert neighbours("federation.num_hospitals=2") == {0: [1], 1: [0]}
    assert neighbours("federation.num_hospitals=4", 'federation.ring_order="2,0,3,1"') == {
        2: [0, 1],
        0: [2, 3],
        3: [0, 1],
        1: [2, 3],
    }


def test_ring_sealed_is_a_ring_option_and_travels_in_the_job(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="federation.ring_sealed = True: expected false unless"):
        load_config(None, ["federation.ring_sealed=true"])
    cfg = tiny_config(tmp_path / "run", *SEALED)
    schema, _ = prepare_sites(cfg, late_seconds=0.0)
    job = make_job(cfg, schema, "run-wire")
    sealed = SealedModel(0, 2, bytes(range(256)) * 3, weight=2.0)
    instruction = RoundInstruction(3, "gan", job=job, sealed=sealed, own_weight=1.5)
    content = recorddict_from_proto(recorddict_to_proto(wire.instruction_to_content(instruction)))  # as Flower does
    assert wire.content_to_instruction(content) == instruction
    assert wire.content_nbytes(content) > len(sealed.blob)
    reply = HospitalReply(1, 3, None, None, sealed={0: b"\x00blob", 2: b"other"})
    assert wire.content_to_reply(recorddict_from_proto(recorddict_to_proto(wire.reply_to_content(reply)))) == reply


def test_site_rules_refuse_plaintext_peers_server_weights_and_unsealed_jobs(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", *SEALED)
    schema, sites = prepare_sites(cfg, late_seconds=0.0)
    sealed_job = make_job(cfg, schema, "run-rules")
    plain_job = dataclasses.replace(sealed_job, ring_sealed=False)
    service = HospitalService(sites[0])  # required = true
    peer = build_architecture(sealed_job.architecture, schema, sealed_job.model, sealed_job.seed).weights()
    merge = [(peer, 1.0)]
    cases = [
        (
            "ring.required = true: the instruction carries plaintext peer weights",
            RoundInstruction(2, "gan", merge=merge, job=plain_job),
        ),
        (
            "ring.required = true: the instruction carries plaintext peer weights",
            RoundInstruction(2, "gan", merge=merge, job=sealed_job),
        ),
        ("does not ask for one", RoundInstruction(1, "autoencoder", job=plain_job)),
        ("takes no weights from the server", RoundInstruction(1, "autoencoder", weights={}, job=sealed_job)),
        ("which the site does not pin", RoundInstruction(2, "gan", sealed=SealedModel(7, 1, b"x"), job=sealed_job)),
        ("comes after the run's last round", RoundInstruction(2, RELEASE, job=sealed_job)),
        ("nothing to release", RoundInstruction(3, RELEASE, job=sealed_job)),
    ]
    for fragment, instruction in cases:
        reply = service.handle(instruction)
        assert not reply.accepted and fragment in reply.refused, (fragment, reply.refused)
    assert service.ledger_file.events() == []
    lenient = dataclasses.replace(sites[0].config.ring, required=False)  # the job's request still binds it
    reason = ring_refusal(lenient, RoundInstruction(2, "gan", merge=merge, job=sealed_job), sealed_job)
    assert reason is not None and reason.startswith("the job asks for a sealed ring: the instruction carries plaintext")
    assert ring_refusal(lenient, RoundInstruction(2, "gan", merge=merge, job=plain_job), plain_job) is None


def test_the_ring_checkpoint_keeps_its_blobs(tmp_path: Path) -> None:
    initial = {"w": np.zeros(3, dtype=np.float32)}
    ring = Ring(initial, sealed=True)
    plan = ring.run_round(1, "autoencoder", [0, 1])
    sends = next(plan)
    assert sends[0].instruction.weights is None and sends[0].instruction.sealed is None
    replies = [HospitalReply(0, 1, None, None, sealed={1: b"zero->one"})]
    sends = plan.send(replies)
    assert sends[0].instruction.sealed == SealedModel(0, 1, b"zero->one")
    with pytest.raises(StopIteration):
        plan.send([HospitalReply(1, 1, None, None, sealed={0: b"one->zero"})])
    checkpoint = ServerCheckpoint(tmp_path)
    checkpoint.save(1, ring.state_dict(), FederationResult())
    restored = Ring(initial, sealed=True)
    restored.load_state_dict(checkpoint.latest()[1])
    assert restored.blobs == {0: {1: (1, b"zero->one")}, 1: {0: (1, b"one->zero")}}
    assert restored.last_trained == 1
    (first,) = next(restored.run_round(2, "gan", [0, 1]))
    assert first.hospital_id == 0 and first.instruction.sealed == SealedModel(1, 1, b"one->zero")
    assert restored.release(3, [0, 1]) is not None and Ring(initial).release(3, [0, 1]) is None
