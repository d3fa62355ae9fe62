"""The one serialization point between fedsynth's plain objects and Flower records.

Every instruction and reply crosses the network through these functions, so this is also where
bytes are counted: :func:`content_nbytes` is the size of the protobuf that Flower puts on the wire
for a message's content.

Sealed ring payloads (:class:`~fedsynth.protocol.SealedModel` in an instruction, the per-receiver
blobs of a reply) travel as ``bytes`` values of a ConfigRecord named ``sealed``: opaque to Flower
and to the server, and counted like every other byte.

Named arrays (weights, merge models) travel packed: one ArrayRecord per group (``arrays``,
``merge-0``, ...) holding one flat buffer per wire dtype, described by the group's manifest in the
``manifest`` ConfigRecord (:mod:`fedsynth.federation.packing`), rounded to the instruction's
``transfer_precision``. A reply carries only the ledger events the server does not hold yet
(:mod:`fedsynth.federation.ledger_delta`). A malformed packed group raises
:class:`~fedsynth.federation.packing.ManifestError`.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.common.serde import recorddict_to_proto

from fedsynth.federation.ledger_delta import delta_of
from fedsynth.federation.packing import ManifestError, pack, unpack
from fedsynth.protocol import Arrays, HospitalReply, Job, RoundInstruction, SealedModel

#: ``stype`` of a packed buffer (see :mod:`fedsynth.federation.packing`): raw little-endian values.
PACKED = "fedsynth.packed"
#: The ConfigRecord holding the manifest of every packed group of a message, by group name.
MANIFEST = "manifest"


def put_arrays(content: RecordDict, group: str, arrays: Arrays, precision: str = "float32") -> None:
    """Add ``arrays`` to ``content`` as ArrayRecord ``group``: one flat buffer per wire dtype, and
    the group's manifest in the ``manifest`` ConfigRecord (rounded per ``precision``)."""
    buffers, manifest = pack(arrays, precision)
    content[group] = ArrayRecord(
        OrderedDict(
            (wire, Array(dtype=wire, shape=(len(data) // np.dtype(wire).itemsize,), stype=PACKED, data=data))
            for wire, data in buffers.items()
        )
    )
    if MANIFEST not in content.config_records:
        content[MANIFEST] = ConfigRecord()
    content.config_records[MANIFEST][group] = manifest


def get_arrays(content: RecordDict, group: str) -> Arrays:
    """The arrays of group ``group`` (see :func:`put_arrays`); :class:`ManifestError` when the group,
    its manifest or one of its buffers is missing or does not match."""
    if group not in content.array_records:
        raise ManifestError(f"array group {group!r}: missing from the message")
    manifests = content.config_records.get(MANIFEST)
    if manifests is None or group not in manifests:
        raise ManifestError(f"array group {group!r}: the message carries no manifest for it")
    buffers = {}
    for wire, array in content.array_records[group].items():
        if array.stype != PACKED or array.dtype != wire or len(array.shape) != 1:
            raise ManifestError(
                f"array group {group!r}: buffer {wire!r} is not a packed 1-d buffer "
                f"(stype {array.stype!r}, dtype {array.dtype!r}, shape {tuple(array.shape)})"
            )
        buffers[wire] = array.data
    return unpack(buffers, str(manifests[group]), where=f"array group {group!r}")


def arrays_nbytes(content: RecordDict, group: str = "arrays") -> int:
    """Serialized size of one array group alone: its buffers, their framing and its manifest."""
    if group not in content.array_records:
        return 0
    alone = RecordDict({group: content.array_records[group]})
    alone[MANIFEST] = ConfigRecord({group: str(content.config_records[MANIFEST][group])})
    return content_nbytes(alone)


def instruction_to_content(instruction: RoundInstruction) -> RecordDict:
    content = RecordDict()
    merge = instruction.merge or []
    content["config"] = ConfigRecord(
        {
            "server_round": instruction.server_round,
            "phase": instruction.phase,
            "has_weights": instruction.weights is not None,
            "merge_count": len(merge),
            "merge_weights": json.dumps([w for _, w in merge]),
            "merge_rule": instruction.merge_rule,
            "merge_params": json.dumps(instruction.merge_params),
            "own_weight": float(instruction.own_weight),
            "job": instruction.job.to_json() if instruction.job is not None else "",
            "ledger_known": int(instruction.ledger_known),
            "ledger_digest": instruction.ledger_digest,
            "precision": instruction.transfer_precision,
        }
    )
    precision = instruction.transfer_precision
    if instruction.weights is not None:
        put_arrays(content, "arrays", instruction.weights, precision)
    for i, (arrays, _) in enumerate(merge):
        put_arrays(content, f"merge-{i}", arrays, precision)
    if instruction.sealed is not None:
        sealed = instruction.sealed
        content["sealed"] = ConfigRecord(
            {
                "sender_id": int(sealed.sender_id),
                "sender_round": int(sealed.sender_round),
                "weight": float(sealed.weight),
                "blob": bytes(sealed.blob),
            }
        )
    return content


def content_to_instruction(content: RecordDict) -> RoundInstruction:
    config = content.config_records["config"]
    weights = get_arrays(content, "arrays") if bool(config["has_weights"]) else None
    merge_weights = json.loads(str(config["merge_weights"]))
    merge = [(get_arrays(content, f"merge-{i}"), float(merge_weights[i])) for i in range(int(config["merge_count"]))]
    sealed = None
    if "sealed" in content.config_records:
        record = content.config_records["sealed"]
        sealed = SealedModel(
            sender_id=int(record["sender_id"]),
            sender_round=int(record["sender_round"]),
            blob=bytes(record["blob"]),  # type: ignore[arg-type]
            weight=float(record["weight"]),
        )
    return RoundInstruction(
        server_round=int(config["server_round"]),
        phase=str(config["phase"]),
        weights=weights,
        merge=merge or None,
        merge_rule=str(config["merge_rule"]),
        merge_params=json.loads(str(config["merge_params"])),
        own_weight=float(config["own_weight"]),
        job=Job.from_json(str(config["job"])) if str(config["job"]) else None,
        sealed=sealed,
        ledger_known=int(config["ledger_known"]),
        ledger_digest=str(config["ledger_digest"]),
        transfer_precision=str(config["precision"]),
    )


def reply_to_content(reply: HospitalReply, answering: RoundInstruction | None = None) -> RecordDict:
    """The reply's content; ``answering`` (the instruction it answers) sets the weights' transfer
    precision and which ledger events the server already holds (those are left out,
    :mod:`fedsynth.federation.ledger_delta`). Without it: exact weights and the ledger as it is."""
    ledger, base = reply.ledger, reply.ledger_base
    precision = "float32"
    if answering is not None:
        precision = answering.transfer_precision
        if base == 0:
            ledger, base = delta_of(reply.ledger, answering.ledger_known, answering.ledger_digest)
    content = RecordDict()
    content["status"] = ConfigRecord(
        {
            "hospital_id": reply.hospital_id,
            "server_round": reply.server_round,
            "refused": reply.refused or "",
            "ledger": json.dumps(ledger, separators=(",", ":")),
            "ledger_base": int(base),
            "plan": json.dumps(reply.plan, separators=(",", ":")),
        }
    )
    metrics = {k: float(v) for k, v in reply.metrics.items() if v is not None and np.isfinite(v)}
    if reply.num_examples is not None:  # only when the site declares its record count public
        metrics["num-examples"] = int(reply.num_examples)
    content["metrics"] = MetricRecord(metrics)
    if reply.weights is not None:
        put_arrays(content, "arrays", reply.weights, precision)
    if reply.sealed:
        receivers = sorted(reply.sealed)
        content["sealed"] = ConfigRecord(
            {"receivers": [int(r) for r in receivers], "blobs": [bytes(reply.sealed[r]) for r in receivers]}
        )
    return content


def content_to_reply(content: RecordDict) -> HospitalReply:
    status = content.config_records["status"]
    metrics = dict(content.metric_records["metrics"])
    count = metrics.pop("num-examples", None)
    num_examples = None if count is None else int(count)
    weights = get_arrays(content, "arrays") if "arrays" in content.array_records else None
    sealed: dict[int, bytes] = {}
    if "sealed" in content.config_records:
        record = content.config_records["sealed"]
        receivers, blobs = list(record["receivers"]), list(record["blobs"])  # type: ignore[arg-type]
        sealed = {int(r): bytes(b) for r, b in zip(receivers, blobs, strict=True)}
    return HospitalReply(
        hospital_id=int(status["hospital_id"]),
        server_round=int(status["server_round"]),
        num_examples=num_examples,
        weights=weights,
        metrics={k: float(v) for k, v in metrics.items()},
        ledger=json.loads(str(status["ledger"])),
        plan=json.loads(str(status["plan"])),
        refused=str(status["refused"]) or None,
        sealed=sealed,
        ledger_base=int(status["ledger_base"]),
    )


def content_nbytes(content: RecordDict) -> int:
    """Size in bytes of the serialized content (what Flower transmits for it)."""
    return recorddict_to_proto(content).ByteSize()


def query_content(what: str) -> RecordDict:
    """A query to a hospital: ``identity`` (which hospital are you) or ``ledger`` (your full ledger)."""
    return RecordDict({"query": ConfigRecord({"what": what})})


def query_of(content: RecordDict) -> str:
    return str(content.config_records["query"]["what"])


def identity_to_content(hospital_id: int) -> RecordDict:
    return RecordDict({"identity": ConfigRecord({"hospital_id": int(hospital_id)})})


def content_to_identity(content: RecordDict) -> int:
    return int(content.config_records["identity"]["hospital_id"])


def ledger_to_content(hospital_id: int, ledger: dict) -> RecordDict:
    return RecordDict({"ledger": ConfigRecord({"hospital_id": int(hospital_id), "ledger": json.dumps(ledger)})})


def content_to_ledger(content: RecordDict) -> tuple[int, dict]:
    record = content.config_records["ledger"]
    return int(record["hospital_id"]), json.loads(str(record["ledger"]))
