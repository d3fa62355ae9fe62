"""Strategy plugins by name."""

from __future__ import annotations

from fedsynth.errors import ConfigError
from fedsynth.federation.fedavg import FedAvg
from fedsynth.federation.strategy import Strategy
from fedsynth.protocol import Arrays

STRATEGIES: dict[str, type[Strategy]] = {FedAvg.name: FedAvg}


def make_strategy(name: str, initial_weights: Arrays, min_hospitals: int = 1) -> Strategy:
    """Instantiate the strategy plugin called ``name``."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ConfigError(f"federation.strategy = {name!r}: expected one of {sorted(STRATEGIES)}") from None
    return cls(initial_weights, min_hospitals=min_hospitals)
