"""The model architectures a job can name, registered by name.

A job names its architecture (and options such as the number of imprint bins); the hospital builds
what the job names, and only when its site policy lists the name among the architectures it
accepts. ``fedsynth-multimodal-v1`` is fedsynth's own generator; ``imprint-block-v1`` is the
generator with a linear imprint block in front of the image encoder, the architecture a
code-shipping server would send (see :mod:`fedsynth.models.imprint`). New architectures register
with :func:`register_architecture`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from fedsynth.config.schema import ModelConfig
from fedsynth.data.records import Schema
from fedsynth.models.generator import MultimodalGenerator, build_generator
from fedsynth.models.imprint import IMPRINT_ARCHITECTURE, ImprintedImageEncoder
from fedsynth.site.policy import BUILTIN_ARCHITECTURE

Builder = Callable[[Schema, ModelConfig, int, Mapping[str, Any]], MultimodalGenerator]

_ARCHITECTURES: dict[str, Builder] = {}


def register_architecture(name: str, builder: Builder) -> None:
    """Make ``name`` buildable; ``builder(schema, model_config, seed, options)`` returns the model."""
    _ARCHITECTURES[name] = builder


def known_architectures() -> list[str]:
    return sorted(_ARCHITECTURES)


def build_architecture(
    name: str, schema: Schema, model: ModelConfig, seed: int, options: Mapping[str, Any] | None = None
) -> MultimodalGenerator:
    """The model a job names, with seeded initial weights (server and hospitals build identical ones)."""
    try:
        builder = _ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r} (known: {known_architectures()})") from None
    return builder(schema, model, seed, dict(options or {}))


def _builtin(schema: Schema, model: ModelConfig, seed: int, options: Mapping[str, Any]) -> MultimodalGenerator:
    if options:
        raise ValueError(f"architecture {BUILTIN_ARCHITECTURE!r} takes no options, got {sorted(options)}")
    return build_generator(schema, model, seed)


def _imprinted(schema: Schema, model: ModelConfig, seed: int, options: Mapping[str, Any]) -> MultimodalGenerator:
    if not schema.has_image or schema.image_shape is None:
        raise ValueError(f"architecture {IMPRINT_ARCHITECTURE!r} needs an image modality")
    bins = int(options.get("bins", 0))
    if bins < 2:
        raise ValueError(f"architecture {IMPRINT_ARCHITECTURE!r}: option 'bins' must be at least 2, got {bins}")
    generator = build_generator(schema, model, seed)
    honest = generator.autoencoder.image_encoder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        encoder = ImprintedImageEncoder(
            schema.image_shape, model.image_latent_dim, model.image_channels, model.groups, bins
        )
    encoder.load_state_dict(honest.state_dict(), strict=False)
    generator.autoencoder.image_encoder = encoder
    return generator


register_architecture(BUILTIN_ARCHITECTURE, _builtin)
register_architecture(IMPRINT_ARCHITECTURE, _imprinted)
