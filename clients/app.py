"""Flower ClientApp entry point for ``flwr run`` (see :mod:`fedsynth.flower.client`)."""

from fedsynth.flower.client import build_client_app

#: The app ``flwr run .`` loads; each node serves the site its node config (or the simulation) names.
app = build_client_app()
