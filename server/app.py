"""Flower ServerApp entry point for ``flwr run`` (see :mod:`fedsynth.flower.server`)."""

from fedsynth.flower.server import build_server_app

#: The app ``flwr run .`` loads (configuration from ``[tool.flwr.app.config]``).
app = build_server_app()
