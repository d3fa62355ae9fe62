"""Strategy plugins by name, built from the federation configuration."""

from __future__ import annotations

from collections.abc import Callable

from fedsynth.aggregation import check_rule
from fedsynth.config.schema import FederationConfig
from fedsynth.errors import ConfigError
from fedsynth.federation.fedavg import FedAvg
from fedsynth.federation.ring import Ring
from fedsynth.federation.strategy import Strategy
from fedsynth.protocol import Arrays


def _fedavg(config: FederationConfig, weights: Arrays) -> Strategy:
    return FedAvg(weights, config.min_hospitals, config.aggregation, config.aggregation_params())


def _ring(config: FederationConfig, weights: Arrays) -> Strategy:
    return Ring(
        weights,
        config.min_hospitals,
        config.aggregation,
        config.aggregation_params(),
        order=config.ring_hospitals(),
        schedule=config.ring_schedule,
        final=config.ring_final,
        sealed=config.ring_sealed,
    )


STRATEGIES: dict[str, Callable[[FederationConfig, Arrays], Strategy]] = {"fedavg": _fedavg, "ring": _ring}


def make_strategy(config: FederationConfig, initial_weights: Arrays) -> Strategy:
    """Instantiate the strategy plugin named by ``config.strategy``, checking its aggregation rule."""
    try:
        factory = STRATEGIES[config.strategy]
    except KeyError:
        raise ConfigError(f"federation.strategy = {config.strategy!r}: expected one of {sorted(STRATEGIES)}") from None
    # A star aggregates all hospitals at once; a ring merges two models at a time.
    check_rule(
        config.aggregation, config.num_hospitals if config.strategy == "fedavg" else 2, **config.aggregation_params()
    )
    return factory(config, initial_weights)
