"""Durable state that fails safe: damaged checkpoints, site state and ledgers are detected by their
checksums; the previous state is used with a message, and a ledger that cannot be trusted stops the
site from training instead of under-reporting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sites import job_for, service_for

from fedsynth.config import load_config
from fedsynth.data.phantom import make_phantom
from fedsynth.federation.checkpoint import ServerCheckpoint
from fedsynth.federation.coordinator import FederationResult
from fedsynth.hospital.ledger_file import LedgerDamaged, LedgerFile
from fedsynth.hospital.service import HospitalService
from fedsynth.persistence import DamagedFile, RoundFiles
from fedsynth.privacy.accounting import MechanismEvent
from fedsynth.protocol import RoundInstruction


def flip_byte(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_round_file_is_detected_and_the_previous_one_used(tmp_path: Path) -> None:
    files = RoundFiles(tmp_path, "state-r", keep=4)
    for r in (1, 2, 3):
        files.save({"round": r}, r)
    flip_byte(files.path(3))
    with pytest.raises(DamagedFile, match="checksum mismatch"):
        files.load(3)
    files.path(2).write_bytes(files.path(2).read_bytes()[:40])  # truncated mid-write
    messages: list[str] = []
    assert files.latest_valid(warn=messages.append) == (1, {"round": 1})
    assert len(messages) == 2 and "state-r00003.pt" in messages[0] and "state-r00002.pt" in messages[1]


def test_a_damaged_server_checkpoint_resumes_from_the_previous_round(tmp_path: Path) -> None:
    checkpoint = ServerCheckpoint(tmp_path)
    for r in (1, 2):
        checkpoint.save(r, {"weights": {"w": r}}, FederationResult(rounds_run=r))
    flip_byte(checkpoint.files.path(2))
    round_, strategy, _ = checkpoint.latest()
    assert round_ == 1 and strategy == {"weights": {"w": 1}}


def event(r: int) -> MechanismEvent:
    return MechanismEvent("autoencoder", r, 1.0, 0.1, 10, run="run-a")


def test_a_torn_or_altered_ledger_copy_is_repaired_from_the_intact_one(tmp_path: Path) -> None:
    messages: list[str] = []
    ledger = LedgerFile(tmp_path, warn=messages.append)
    for r in (1, 2, 3):
        ledger.append(event(r))
    primary, mirror = ledger.paths
    primary.write_text(primary.read_text()[:-15])  # a crash mid-append tore the last line
    assert [e.round for e in ledger.events()] == [1, 2, 3]
    assert "line 3" in messages[0] and primary.read_text() == mirror.read_text()
    lines = mirror.read_text().splitlines(keepends=True)
    mirror.write_text(lines[0] + lines[1].replace('"steps": 10', '"steps": 1') + lines[2])  # an edited entry
    assert [e.steps for e in ledger.events()] == [10, 10, 10]
    assert "line 2" in messages[1]


def test_a_ledger_that_cannot_be_trusted_stops_the_site(tmp_path: Path) -> None:
    records = make_phantom(60, 2, 32, seed=0)
    cfg = load_config(None, ["privacy.sample_rate=0.2", "train.local_steps_autoencoder=2", "model.image_channels=8"])
    service = service_for(tmp_path, records)
    job = job_for(cfg, records)
    assert service.handle(RoundInstruction(1, "autoencoder", job=job)).accepted
    for path in service.ledger_file.paths:
        flip_byte(path, offset=5)
    reply = HospitalService(service.site).handle(RoundInstruction(2, "autoencoder", job=job))
    assert not reply.accepted and "cannot be trusted" in reply.refused and reply.weights is None
    with pytest.raises(LedgerDamaged):
        service.ledger_file.events()


def test_a_damaged_site_state_falls_back_with_a_message_in_the_site_log(tmp_path: Path) -> None:
    records = make_phantom(60, 2, 32, seed=0)
    cfg = load_config(
        None,
        [
            "privacy.sample_rate=0.2",
            "train.local_steps_autoencoder=2",
            "model.image_channels=8",
            "train.rounds_autoencoder=3",
        ],
    )
    service = service_for(tmp_path, records)
    job = job_for(cfg, records)
    for r in (1, 2):
        service.handle(RoundInstruction(r, "autoencoder", job=job))
    state = tmp_path / "state" / "runs" / "run-a" / "state-r00002.pt"
    flip_byte(state)
    restarted = HospitalService(service.site)  # the site process restarted: memory is gone
    reply = restarted.handle(RoundInstruction(3, "autoencoder", job=job))
    assert reply.accepted  # trained from round 1's state instead of failing on a pickle error
    assert [e["round"] for e in reply.ledger["history"]] == [1, 2, 3]  # no ledger entry lost
    log = [json.loads(x) for x in (tmp_path / "state" / "runs" / "run-a" / "site-log.jsonl").read_text().splitlines()]
    damaged = [x for x in log if x["kind"] == "damaged"]
    assert damaged and "state-r00002.pt" in damaged[0]["message"] and "previous saved round" in damaged[0]["message"]
