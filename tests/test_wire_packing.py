"""The wire packs a message's arrays into one buffer per dtype with a manifest, sends only the ledger
events the server lacks, and can round weights to float16 or int8 in transit."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from flwr.app import Array, RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from sites import job_for, service_for

from fedsynth.config import load_config
from fedsynth.data.phantom import make_phantom
from fedsynth.errors import ConfigError
from fedsynth.federation import wire
from fedsynth.federation.checkpoint import ServerCheckpoint
from fedsynth.federation.ledger_delta import LedgerDeltaError, mark_of, rebuild
from fedsynth.federation.packing import MIN_ROUNDED_SIZE, ManifestError, pack, unpack
from fedsynth.federation.server import run_federation
from fedsynth.federation.strategy import Send
from fedsynth.federation.transport import Exchange
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.protocol import HospitalReply, RoundInstruction
from fedsynth.simulation import simulate_in_process
from fedsynth.simulation.inprocess import InProcessTransport
from fedsynth.simulation.sites import prepare_sites


def over_the_wire(content: RecordDict) -> RecordDict:
    """``content`` as the receiver gets it (Flower's protobuf, both ways)."""
    return recorddict_from_proto(recorddict_to_proto(content))


def mixed_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    special = np.array([np.nan, -0.0, np.inf, -np.inf, 1e-45, 3.4e38], np.float32)
    special.view(np.uint32)[0] = 0x7FC00123  # a NaN with a payload must come back bit for bit
    return {
        "w": rng.normal(size=(7, 5)).astype(np.float32),
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0,), np.float32),
        "empty-2d": np.zeros((3, 0), np.float64),
        "d": rng.normal(size=(4,)),
        "h": rng.normal(size=(3, 2)).astype(np.float16),
        "count": np.array(7, np.int64),
        "idx": np.arange(-3, 3, dtype=np.int32),
        "bytes": np.arange(250, 256, dtype=np.uint8),
        "mask": np.array([[True, False], [False, True]]),
        "z": (rng.normal(size=3) + 1j * rng.normal(size=3)).astype(np.complex64),
        "special": special,
        "fortran": np.asfortranarray(rng.normal(size=(3, 4)).astype(np.float32)),
        "big-endian": np.arange(5, dtype=">f4"),
    }


def assert_bit_identical(got: dict[str, np.ndarray], sent: dict[str, np.ndarray]) -> None:
    assert list(got) == list(sent)  # names, in order
    for name, value in sent.items():
        value = np.asarray(value)
        native = value.astype(value.dtype.newbyteorder("="))
        assert got[name].dtype == native.dtype, name
        assert got[name].shape == value.shape, name
        assert got[name].tobytes() == np.ascontiguousarray(native).tobytes(), name
        assert got[name].flags.writeable, name


# -- packing ---------------------------------------------------------------------------------------
def test_packed_instruction_and_reply_round_trip_bit_identical() -> None:
    arrays = mixed_arrays()
    instruction = RoundInstruction(3, "gan", weights=arrays, merge=[(arrays, 2.0), ({}, 1.0)])
    content = over_the_wire(wire.instruction_to_content(instruction))
    # one buffer per dtype, not one Flower array per tensor
    assert sorted(content.array_records["arrays"]) == sorted({np.dtype(a.dtype).name for a in arrays.values()})
    back = wire.content_to_instruction(content)
    assert_bit_identical(back.weights, arrays)
    assert_bit_identical(back.merge[0][0], arrays)
    assert back.merge[1] == ({}, 1.0)

    reply = HospitalReply(1, 3, 40, weights=arrays, metrics={"steps": 3.0}, plan={"record_count": 40})
    got = wire.content_to_reply(over_the_wire(wire.reply_to_content(reply)))
    assert_bit_identical(got.weights, arrays)
    assert (got.metrics, got.plan, got.num_examples) == (reply.metrics, reply.plan, 40)


def test_packing_removes_the_per_array_framing() -> None:
    """Forty 1,000-float arrays: the packed group costs under 1.2% more than the raw bytes (one
    Flower array each used to add about 200 bytes, 5%); the manifest names the dtype once."""
    arrays = {f"layer.{i}.weight": np.ones((10, 100), np.float32) for i in range(40)}
    content = wire.instruction_to_content(RoundInstruction(1, "autoencoder", weights=arrays))
    raw = sum(a.nbytes for a in arrays.values())
    assert raw < wire.arrays_nbytes(content) < 1.012 * raw
    assert content.config_records["manifest"]["arrays"].count("float32") == 1


def test_an_unpackable_dtype_is_refused_by_name() -> None:
    with pytest.raises(ManifestError, match="array 'obj': dtype object"):
        pack({"obj": np.array([object()], dtype=object)})


def _packed_reply() -> RecordDict:
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.arange(3, dtype=np.int64)}
    return wire.reply_to_content(HospitalReply(0, 1, None, weights=arrays))


def _set_manifest(entries: object) -> RecordDict:
    content = _packed_reply()
    content.config_records["manifest"]["arrays"] = entries if isinstance(entries, str) else json.dumps(entries)
    return content


A, B = ["a", [2, 3], 0], ["b", [3], 0]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("not json", "the array manifest is not JSON"),
        ({"a": 1}, "the array manifest is a dict, expected a list of dtype runs"),
        ([["float32"], ["int64", B]], r"manifest run 0 is not \[dtype, entry, ...\]"),
        ([["float33", A], ["int64", B]], "manifest run 0: dtype 'float33' is not a dtype"),
        ([["object", A], ["int64", B]], "manifest run 0: dtype 'object' is not a numeric dtype name"),
        ([["float32", ["a", [2, 3]]], ["int64", B]], r"manifest entry 0: expected \[name, shape, offset"),
        ([["float32", [5, [2, 3], 0]], ["int64", B]], "manifest entry 0: name 5 is not a string"),
        ([["float32", A], ["int64", ["a", [3], 0]]], r"entry 1 \('a'\): duplicate array name"),
        ([["float32", ["a", [2, -3], 0]], ["int64", B]], r"shape \[2, -3\] is not a list of non-negative"),
        ([["float32", ["a", [2, 3], -1]], ["int64", B]], "offset -1 is not a non-negative integer"),
        ([["float32", ["a", [2, 3], 1]], ["int64", B]], "offset 1 in the float32 buffer, expected 0"),
        ([["float32", ["a", [2, 4], 0]], ["int64", B]], "8 elements at offset 0 overrun the float32 buffer"),
        ([["float32", ["a", [2, 2], 0]], ["int64", B]], "the float32 buffer has 6 elements but the manifest"),
        ([["float32", A], ["int64", B], ["float32", ["c", [1], 0, "int8", 1.0]]], "no int8 buffer"),
        ([["float32", ["a", [2, 3], 0, "int8", -1.0]], ["int64", B]], "int8 scale -1.0 is not a finite"),
        ([["float32", ["a", [2, 3], 0, "int8"]], ["int64", B]], "an int8 entry carries a scale"),
        ([["float32", A], ["int64", ["b", [3], 0, "float16"]]], "a int64 array cannot travel as"),
    ],
)
def test_a_malformed_manifest_says_what_is_wrong(entries: object, message: str) -> None:
    with pytest.raises(ManifestError, match=message) as caught:
        wire.content_to_reply(_set_manifest(entries))
    assert "array group 'arrays'" in str(caught.value)


def test_a_missing_manifest_or_a_foreign_buffer_is_refused() -> None:
    content = _packed_reply()
    del content.config_records["manifest"]
    with pytest.raises(ManifestError, match="array group 'arrays': the message carries no manifest"):
        wire.content_to_reply(content)
    content = _packed_reply()
    content.array_records["arrays"]["float32"] = Array(np.zeros(6, np.float32))  # a plain Flower array
    with pytest.raises(ManifestError, match="buffer 'float32' is not a packed 1-d buffer"):
        wire.content_to_reply(content)
    with pytest.raises(ManifestError, match="the float32 buffer has 10 bytes, not a multiple of 4"):
        unpack({"float32": bytes(10)}, "[]")


# -- reduced precision -----------------------------------------------------------------------------
def test_float16_and_int8_stay_within_their_error_bounds() -> None:
    rng = np.random.default_rng(1)
    arrays = {
        "w": rng.normal(scale=0.3, size=(64, 32)).astype(np.float32),
        "d": rng.normal(scale=5.0, size=(200,)),
        "zeros": np.zeros((80,), np.float32),
        "bias": rng.normal(size=(MIN_ROUNDED_SIZE - 1,)).astype(np.float32),  # small: exact
        "broken": np.full((100,), np.nan, np.float32),  # non-finite: exact (validation must see it)
        "huge": np.full((100,), 1e6, np.float32),  # beyond float16: exact in float16
        "ints": np.arange(100, dtype=np.int64),
    }
    raw = sum(a.nbytes for a in arrays.values())
    sizes = {}
    for precision in ("float32", "float16", "int8"):
        instruction = RoundInstruction(1, "gan", weights=arrays, transfer_precision=precision)
        content = over_the_wire(wire.instruction_to_content(instruction))
        sizes[precision] = wire.content_nbytes(content)
        got = wire.content_to_instruction(content).weights
        for name, sent in arrays.items():
            assert got[name].dtype == sent.dtype and got[name].shape == sent.shape, (precision, name)
        for name in ("bias", "broken", "ints"):
            assert got[name].tobytes() == arrays[name].tobytes(), (precision, name)
        np.testing.assert_array_equal(got["zeros"], arrays["zeros"])
        for name in ("w", "d"):
            sent, error = arrays[name], np.abs(got[name] - arrays[name])
            if precision == "float32":
                assert got[name].tobytes() == sent.tobytes()
            elif precision == "float16":  # round to nearest: half a unit in the 11th bit
                assert (error <= np.abs(sent) * 2.0**-11 + 2.0**-25).all(), name
                assert error.max() > 0
            else:  # absmax int8: half a step of max|x| / 127
                step = np.abs(sent).max() / 127
                assert error.max() <= step / 2 * (1 + 1e-6), name
                assert error.max() > step / 10
        assert (got["huge"] == 1e6).all() if precision != "int8" else np.allclose(got["huge"], 1e6)
    assert sizes["float32"] > raw
    assert sizes["float16"] < 0.7 * sizes["float32"]
    assert sizes["int8"] < sizes["float16"]


def test_transfer_precision_is_a_checked_config_key() -> None:
    assert load_config(None, ['federation.transfer_precision="int8"']).federation.transfer_precision == "int8"
    with pytest.raises(ConfigError, match="federation.transfer_precision"):
        load_config(None, ['federation.transfer_precision="int4"'])


# -- ledger deltas ---------------------------------------------------------------------------------
SMALL = [
    "train.rounds_autoencoder=1",
    "train.rounds_gan=4",
    "train.local_steps_autoencoder=2",
    "train.local_steps_gan=2",
    "train.generator_steps_per_round=1",
    "train.batch_size=16",
    "model.image_channels=8",
    "privacy.sample_rate=0.2",
    "privacy.noise_multiplier=0.8",
    "privacy.epsilon_budget=7.5",  # rounds 1-3 fit (epsilon 5.1, 6.3, 7.2), rounds 4 and 5 are refused
]


def serve(service, instruction: RoundInstruction) -> tuple[HospitalReply, HospitalReply]:
    """(the site's own reply, the reply as the server decodes it) for one instruction."""
    received = wire.content_to_instruction(over_the_wire(wire.instruction_to_content(instruction)))
    reply = service.handle(received)
    return reply, wire.content_to_reply(over_the_wire(wire.reply_to_content(reply, received)))


def test_ledger_deltas_rebuild_the_full_ledger_across_refusals_and_a_resumed_server(tmp_path: Path) -> None:
    records = make_phantom(80, 2, 32, seed=0)
    cfg = load_config(None, SMALL)
    job = job_for(cfg, records)
    service = service_for(tmp_path / "site", records)
    held: PrivacyLedger | None = None
    saved: dict[int, PrivacyLedger | None] = {}
    statuses = []
    for r in range(1, cfg.train.num_rounds + 1):
        saved[r] = held  # what a checkpoint taken before round r holds
        known, digest = mark_of(held)
        instruction = RoundInstruction(
            r, cfg.train.phase_of_round(r), job=job, ledger_known=known, ledger_digest=digest
        )
        full, decoded = serve(service, instruction)
        assert decoded.ledger_base == known  # only what the server lacks travels
        assert len(decoded.ledger["history"]) == len(full.ledger["history"]) - known <= 1
        rebuilt = rebuild(decoded.ledger, decoded.ledger_base, held, 0)
        assert rebuilt == full.ledger
        held = PrivacyLedger.from_dict(rebuilt)
        statuses.append(full.accepted)
    assert statuses == [True, True, True, False, False], "the budget must run out after round 3"

    # A server that died after round 3's reply and resumed from the checkpoint before it resends
    # round 3; the site answers from its stored reply, encoded against the older count.
    older = saved[3]
    known, digest = mark_of(older)
    again = RoundInstruction(3, "gan", job=job, ledger_known=known, ledger_digest=digest)
    full, decoded = serve(service_for(tmp_path / "site", records), again)
    assert full.accepted and decoded.ledger_base == 2 and len(decoded.ledger["history"]) == 1
    assert rebuild(decoded.ledger, 2, older, 0) == full.ledger
    assert [e["round"] for e in full.ledger["history"]] == [1, 2, 3]  # replayed, not charged again

    # A server that holds a different history gets the whole ledger, and cannot be fooled by a base.
    _, decoded = serve(service, replace(again, ledger_digest="0" * 64))
    assert decoded.ledger_base == 0 and decoded.ledger["history"] == held.to_dict()["history"]
    with pytest.raises(
        LedgerDeltaError, match="hospital 4's ledger delta starts after event 3, but the server holds 2"
    ):
        rebuild({"history": []}, 3, older, 4)


@dataclass
class RecordingTransport:
    """The in-process transport, noting each reply's ledger base and carried events as they arrive."""

    inner: InProcessTransport
    seen: list[tuple[int, int, int, int]] = field(default_factory=list)  # round, hospital, base, events

    def hospitals(self) -> list[int]:
        return self.inner.hospitals()

    def exchange(self, sends: list[Send], timeout: float) -> Exchange:
        out = self.inner.exchange(sends, timeout)
        for r in out.replies:
            self.seen.append((r.server_round, r.hospital_id, r.ledger_base, len(r.ledger.get("history", []))))
        return out

    def ledgers(self, hospitals: list[int], timeout: float) -> dict[int, dict]:
        return self.inner.ledgers(hospitals, timeout)


class Killed(Exception):
    pass


def test_a_resumed_int8_run_keeps_full_ledgers_and_a_privacy_json_of_the_same_shape(tmp_path: Path) -> None:
    exact = simulate_in_process(tiny_config(tmp_path / "exact"))
    cfg = tiny_config(tmp_path / "int8", 'federation.transfer_precision="int8"')
    schema, sites = prepare_sites(cfg, late_seconds=0.0)

    def crash(record: dict) -> None:
        if record["round"] == 2:
            raise Killed

    first = RecordingTransport(InProcessTransport.from_sites(sites))
    with pytest.raises(Killed):
        run_federation(cfg, schema, first, on_round=crash)
    resumed = RecordingTransport(InProcessTransport.from_sites(sites))
    summary = run_federation(cfg, schema, resumed, resume=True)

    # Round 1 carries whole (empty) ledgers; every later reply only the newest event, also after resume.
    assert {(r, base, n) for r, _, base, n in first.seen} == {(1, 0, 1), (2, 1, 1)}
    assert {(r, base, n) for r, _, base, n in resumed.seen} == {(2, 1, 1), (3, 2, 1)}
    # What the server rebuilt (its last checkpoint) is each site's full ledger.
    _, _, result = ServerCheckpoint(tmp_path / "int8" / "server").latest()
    for hid, service in resumed.inner.services.items():
        assert result.ledgers[hid].to_dict() == service.ledger_report()

    assert (
        summary["communication"]["transfer_precision"] == "int8"
        and "rounded" in summary["communication"]["transfer_note"]
    )
    assert exact["communication"]["transfer_precision"] == "float32" and "transfer_note" not in exact["communication"]
    assert summary["communication"]["bytes_up"] < 0.5 * exact["communication"]["bytes_up"]
    # Hospitals in worker processes answer through the same wire: their updates are rounded too.
    pooled = simulate_in_process(
        tiny_config(tmp_path / "pooled", 'federation.transfer_precision="int8"', "simulation.workers=2")
    )
    assert pooled["communication"]["bytes_up"] < 0.5 * exact["communication"]["bytes_up"]

    def shape(value: object) -> object:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shape(v) for v in value[:1]]
        return type(value).__name__

    privacy = json.loads((tmp_path / "int8" / "privacy.json").read_text())
    assert shape(privacy) == shape(json.loads((tmp_path / "exact" / "privacy.json").read_text()))
    for hid, h in privacy["hospitals"].items():
        assert [e["round"] for e in h["history"]] == [1, 2, 3], hid  # round 2 replayed, not charged twice
