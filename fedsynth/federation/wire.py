"""The one serialization point between fedsynth's plain objects and Flower records.

Every instruction and reply crosses the network through these functions, so this is also where
bytes are counted: :func:`content_nbytes` is the size of the protobuf that Flower puts on the wire
for a message's content.

Sealed ring payloads (:class:`~fedsynth.protocol.SealedModel` in an instruction, the per-receiver
blobs of a reply) travel as ``bytes`` values of a ConfigRecord named ``sealed``: opaque to Flower
and to the server, and counted like every other byte.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.common.serde import recorddict_to_proto

from fedsynth.protocol import Arrays, HospitalReply, Job, RoundInstruction, SealedModel


def arrays_to_record(arrays: Arrays) -> ArrayRecord:
    return ArrayRecord(OrderedDict((k, Array(np.ascontiguousarray(v))) for k, v in arrays.items()))


def record_to_arrays(record: ArrayRecord) -> Arrays:
    return OrderedDict((k, v.numpy()) for k, v in record.items())


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
        }
    )
    if instruction.weights is not None:
        content["arrays"] = arrays_to_record(instruction.weights)
    for i, (arrays, _) in enumerate(merge):
        content[f"merge-{i}"] = arrays_to_record(arrays)
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
    weights = record_to_arrays(content.array_records["arrays"]) if bool(config["has_weights"]) else None
    merge_weights = json.loads(str(config["merge_weights"]))
    merge = [
        (record_to_arrays(content.array_records[f"merge-{i}"]), float(merge_weights[i]))
        for i in range(int(config["merge_count"]))
    ]
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
    )


def reply_to_content(reply: HospitalReply) -> RecordDict:
    content = RecordDict()
    content["status"] = ConfigRecord(
        {
            "hospital_id": reply.hospital_id,
            "server_round": reply.server_round,
            "refused": reply.refused or "",
            "ledger": json.dumps(reply.ledger),
            "plan": json.dumps(reply.plan),
        }
    )
    metrics = {k: float(v) for k, v in reply.metrics.items() if v is not None and np.isfinite(v)}
    if reply.num_examples is not None:  # only when the site declares its record count public
        metrics["num-examples"] = int(reply.num_examples)
    content["metrics"] = MetricRecord(metrics)
    if reply.weights is not None:
        content["arrays"] = arrays_to_record(reply.weights)
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
    weights = record_to_arrays(content.array_records["arrays"]) if "arrays" in content.array_records else None
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
