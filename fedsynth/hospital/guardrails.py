"""Site guardrails: checks a hospital runs on every proposal before it touches a record.

A guardrail is a small pure function over a :class:`Proposal` (the site's policy, the instruction
the server sent, the site's own data schema) returning None to let the proposal through or a
sentence saying why the site refuses. The site service runs :data:`GUARDRAILS` in order, in front
of every engine (in-process and Flower alike); new checks (e.g. detectors of crafted weights)
register by appending to the list or passing their own list to the service.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedsynth.config.schema import ModelConfig
from fedsynth.data.records import Schema
from fedsynth.models.generator import build_generator
from fedsynth.protocol import RoundInstruction
from fedsynth.site.policy import SitePolicy


@dataclass(frozen=True)
class Proposal:
    """What a guardrail sees: the site's policy, the server's instruction, the site's data schema."""

    policy: SitePolicy
    instruction: RoundInstruction
    schema: Schema


Guardrail = Callable[[Proposal], str | None]


def job_present(p: Proposal) -> str | None:
    if p.instruction.job is None:
        return "the instruction carries no job description (run id, schedule, privacy request)"
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


@functools.lru_cache(maxsize=8)
def _architecture_shapes(schema: Schema, model: ModelConfig, seed: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the honest architecture (built once per schema and model, not per round)."""
    return {k: tuple(v.shape) for k, v in build_generator(schema, model, seed).state_dict().items()}


def weights_fit_architecture(p: Proposal) -> str | None:
    """Every array the server sends has the name, shape and dtype of the honest architecture."""
    job = p.instruction.job
    assert job is not None
    reference = _architecture_shapes(p.schema, job.model, job.seed)
    groups = [p.instruction.weights or {}] + [arrays for arrays, _ in p.instruction.merge or []]
    for arrays in groups:
        for name, value in arrays.items():
            if name not in reference:
                return f"received array {name!r} is not part of the architecture"
            if tuple(value.shape) != tuple(reference[name]):
                return f"received array {name!r} has shape {tuple(value.shape)}, expected {tuple(reference[name])}"
            if not np.issubdtype(value.dtype, np.floating) or not np.isfinite(value).all():
                return f"received array {name!r} is not finite floating point"
    return None


#: Run in order; the first refusal wins.
GUARDRAILS: list[Guardrail] = [job_present, architecture_accepted, schema_matches, weights_fit_architecture]


def first_refusal(proposal: Proposal, guardrails: list[Guardrail] | None = None) -> str | None:
    """The reason of the first guardrail that refuses ``proposal``, or None."""
    for check in GUARDRAILS if guardrails is None else guardrails:
        reason = check(proposal)
        if reason is not None:
            return reason
    return None
