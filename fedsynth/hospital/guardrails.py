"""Site guardrails: checks a hospital runs on every proposal before it touches a record.

A guardrail is a small pure function over a :class:`Proposal` (the site's policy, the instruction
the server sent, the site's own data schema and record count) returning None to let the proposal
through or a sentence saying why the site refuses. The site service runs :data:`GUARDRAILS` in
order, in front of every engine (in-process and Flower alike); the refusal names the rule that
refused (``rule code_pinned: ...``). New checks register by appending to the list or passing their
own list to the service.

Against a server that tries to reconstruct records from updates the guardrails close both roads:
a server that ships code (a modified architecture, "Robbing the Fed") meets ``code_pinned`` and
``architecture_accepted``; one that asks for tiny batches meets ``batch_floor`` (the DP floor lives
in the privacy plan); one that plants imprint or trap rows in honest layers ("When the Curious
Abandon Honesty") meets ``weights_look_honest`` (see :mod:`fedsynth.hospital.detectors`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from fedsynth.config.schema import ModelConfig
from fedsynth.data.records import Schema
from fedsynth.hospital.detectors import LinearWeights, first_finding
from fedsynth.hospital.plan import PHASE_MECHANISM
from fedsynth.models.architectures import build_architecture
from fedsynth.protocol import Arrays, RoundInstruction
from fedsynth.site.code import app_code_digest
from fedsynth.site.policy import SitePolicy


@dataclass(frozen=True)
class Proposal:
    """What a guardrail sees: the site's policy, the server's instruction, the site's data schema
    and its record count (which never leaves the site: refusals do not quote it)."""

    policy: SitePolicy
    instruction: RoundInstruction
    schema: Schema
    record_count: int = 0


Guardrail = Callable[[Proposal], str | None]


def job_present(p: Proposal) -> str | None:
    if p.instruction.job is None:
        return "the instruction carries no job description (run id, schedule, privacy request)"
    return None


def code_pinned(p: Proposal) -> str | None:
    """The job runs code the site approved: a fingerprint in ``policy.approved_code``, or, when
    the policy lists none, exactly the code installed at the site. In a Flower deployment the
    server ships the application, so a changed fingerprint means changed code (for example a
    network with an imprint block)."""
    job = p.instruction.job
    assert job is not None
    approved = p.policy.approved_code or (app_code_digest(),)
    if job.code_digest not in approved:
        shown = job.code_digest[:12] or "none"
        return (
            f"the job runs code with fingerprint {shown}, which the site has not approved "
            f"(approved: {[d[:12] for d in approved]})"
        )
    return None


def architecture_accepted(p: Proposal) -> str | None:
    job = p.instruction.job
    assert job is not None
    if job.architecture not in p.policy.architectures:
        return f"architecture {job.architecture!r} is not among the site's accepted {list(p.policy.architectures)}"
    return None


def schema_matches(p: Proposal) -> str | None:
    job = p.instruction.job
    assert job is not None
    if job.schema_digest != p.schema.digest():
        return (
            f"the site's data schema (digest {p.schema.digest()}) differs from the consortium's public schema "
            f"(digest {job.schema_digest}): columns, classes or image shape do not match"
        )
    return None


def batch_floor(p: Proposal) -> str | None:
    """Every step averages at least ``policy.min_batch_size`` records in expectation: a Poisson
    batch of sample rate x record count, ``train.batch_size`` records for fixed batches, or every
    record for the releases of the Gaussian schedule. The
    refusal does not quote the expected batch (it would reveal a private record count)."""
    job = p.instruction.job
    assert job is not None
    n = p.record_count
    floor = p.policy.min_batch_size
    if n <= 0:
        return None  # the privacy plan refuses a site without records
    if job.train.schedule == "gaussian":  # every release sums over the whole data set
        if n < floor:
            return f"the Gaussian schedule's releases sum over every record, and the site holds fewer than {floor:g}"
        return None
    if job.train.sampling == "fixed":
        if min(job.train.batch_size, n) < floor:
            return (
                f"fixed batches of train.batch_size = {job.train.batch_size} records are below the site's "
                f"smallest batch {floor:g}"
            )
        return None
    if job.privacy.sample_rate > 0:
        expected = job.privacy.sample_rate * n
    else:  # a site with a public record count samples batch_size / n
        expected = min(job.train.batch_size, n)
    if expected < floor:
        return (
            f"the requested sampling (privacy.sample_rate = {job.privacy.sample_rate:g}, train.batch_size = "
            f"{job.train.batch_size}) gives this site batches smaller than its floor of {floor:g} records "
            "in expectation"
        )
    return None


@dataclass(frozen=True)
class LinearSpec:
    """Where a Linear layer's arrays live in the architecture's state: its weight, its bias, and
    the weight of the Linear that reads its output (the next Linear in the same parent module)."""

    weight: str
    bias: str | None
    next_weight: str | None


@dataclass(frozen=True)
class Reference:
    """What the architecture a job names looks like: array shapes and the Linear layers."""

    shapes: Mapping[str, tuple[int, ...]]
    linears: tuple[LinearSpec, ...]


def _options_key(options: Mapping[str, Any]) -> str:
    """A hashable, order-free form of an architecture's options (for the reference cache)."""
    return json.dumps(dict(options), sort_keys=True, default=str)


@functools.lru_cache(maxsize=8)
def _reference(architecture: str, schema: Schema, model: ModelConfig, seed: int, options: str) -> Reference | str:
    """The reference of the architecture a job names (built once per job, not per round), or why
    it cannot be built."""
    try:
        network = build_architecture(architecture, schema, model, seed, json.loads(options))
    except ValueError as e:
        return str(e)
    shapes = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    linears = []
    for parent_name, parent in network.named_modules():
        children = [(n, m) for n, m in parent.named_children() if isinstance(m, nn.Linear)]
        prefix = f"{parent_name}." if parent_name else ""
        for i, (name, module) in enumerate(children):
            after = children[i + 1][0] if i + 1 < len(children) else None
            linears.append(
                LinearSpec(
                    weight=f"{prefix}{name}.weight",
                    bias=f"{prefix}{name}.bias" if module.bias is not None else None,
                    next_weight=f"{prefix}{after}.weight" if after is not None else None,
                )
            )
    return Reference(shapes, tuple(linears))


def job_reference(p: Proposal) -> Reference | str:
    """The reference of the proposal's architecture, or why it cannot be built."""
    job = p.instruction.job
    assert job is not None
    return _reference(job.architecture, p.schema, job.model, job.seed, _options_key(job.architecture_options))


def _groups(instruction: RoundInstruction) -> list[Arrays]:
    """Every set of arrays an instruction carries: the weights to load and each peer to merge."""
    return [instruction.weights or {}] + [arrays for arrays, _ in instruction.merge or []]


def weights_fit_architecture(p: Proposal) -> str | None:
    """Every array the server sends has the name, shape and dtype of the architecture the job
    names (built by :func:`fedsynth.models.architectures.build_architecture` with its options)."""
    built = job_reference(p)
    if isinstance(built, str):
        return f"the job's architecture cannot be built: {built}"
    reference = built.shapes
    for arrays in _groups(p.instruction):
        for name, value in arrays.items():
            if name not in reference:
                return f"received array {name!r} is not part of the architecture"
            if tuple(value.shape) != tuple(reference[name]):
                return f"received array {name!r} has shape {tuple(value.shape)}, expected {tuple(reference[name])}"
            if not np.issubdtype(value.dtype, np.floating) or not np.isfinite(value).all():
                return f"received array {name!r} is not finite floating point"
    return None


#: The networks whose Linear layers the weight detectors inspect: those the site trains on its
#: records (DP-SGD). The latent generator never sees a record (it learns only through the
#: discriminator's outputs) and its last layer starts at zero, with identical rows by design.
RECORD_NETWORKS = tuple(PHASE_MECHANISM.values())


def inspected_layers(p: Proposal) -> list[LinearWeights]:
    """Every Linear of the record networks in every array set of the proposal (the weights to
    load and each ring peer), with its bias and the next layer's weight where they were sent."""
    built = job_reference(p)
    if isinstance(built, str):
        return []
    layers = []
    for arrays in _groups(p.instruction):
        for spec in built.linears:
            if spec.weight.split(".")[0] not in RECORD_NETWORKS or spec.weight not in arrays:
                continue
            bias = arrays.get(spec.bias) if spec.bias is not None else None
            after = arrays.get(spec.next_weight) if spec.next_weight is not None else None
            layers.append(LinearWeights(spec.weight, np.asarray(arrays[spec.weight]), bias, after))
    return layers


def weights_look_honest(p: Proposal) -> str | None:
    """No Linear the site would train on its records carries planted imprint or trap rows (see
    :mod:`fedsynth.hospital.detectors`); skipped when the policy turns ``check_weights`` off."""
    if not p.policy.check_weights:
        return None
    for layer in inspected_layers(p):
        found = first_finding(layer)
        if found is not None:
            return f"the weights look crafted to expose records: {found}"
    return None


#: Run in order; the first refusal wins.
GUARDRAILS: list[Guardrail] = [
    job_present,
    code_pinned,
    architecture_accepted,
    schema_matches,
    batch_floor,
    weights_fit_architecture,
    weights_look_honest,
]


def first_refusal(proposal: Proposal, guardrails: list[Guardrail] | None = None) -> str | None:
    """The reason of the first guardrail that refuses ``proposal``, naming the rule, or None."""
    for check in GUARDRAILS if guardrails is None else guardrails:
        reason = check(proposal)
        if reason is not None:
            return f"rule {getattr(check, '__name__', 'guardrail')}: {reason}"
    return None
