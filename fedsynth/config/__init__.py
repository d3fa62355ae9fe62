"""Typed run configuration: sections, loading, overrides, Flower's flat form."""

from fedsynth.config.loading import (
    build,
    dumps_toml,
    from_flat,
    load_config,
    parse_override,
    save_config,
    to_flat,
    to_nested,
)
from fedsynth.config.schema import (
    EvaluationConfig,
    FederationConfig,
    ModelConfig,
    PrivacyConfig,
    RunConfig,
    SimulationConfig,
    TrainConfig,
)

__all__ = [
    "EvaluationConfig",
    "FederationConfig",
    "ModelConfig",
    "PrivacyConfig",
    "RunConfig",
    "SimulationConfig",
    "TrainConfig",
    "build",
    "dumps_toml",
    "from_flat",
    "load_config",
    "parse_override",
    "save_config",
    "to_flat",
    "to_nested",
]
