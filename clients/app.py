"""Flower ClientApp: translates Flower messages to :class:`fedsynth.hospital.Hospital` calls.

Node config keys: ``partition-id`` (set by Flower's simulation engine) or ``hospital-id`` (a real
site), and optionally ``state-dir`` (where the hospital keeps its state; default: inside the run
folder, for simulation).
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedsynth.config import RunConfig, from_flat
from fedsynth.federation import wire
from fedsynth.hospital.service import HospitalService


def hospital_id_of(context: Context) -> int:
    """The hospital this node serves: ``hospital-id`` (real site) or ``partition-id`` (simulation)."""
    for key in ("hospital-id", "partition-id"):
        if key in context.node_config:
            return int(context.node_config[key])
    raise KeyError("node config has neither 'hospital-id' nor 'partition-id'")


def build_client_app(config: RunConfig | None = None, mods: list | None = None) -> ClientApp:
    """A ClientApp bound to ``config``, or reading it from the run config when None (``flwr run``);
    ``mods`` are Flower client mods (e.g. to inspect messages)."""
    app = ClientApp(mods=mods or [])
    service: HospitalService | None = None

    def run_config(context: Context) -> RunConfig:
        return config if config is not None else from_flat(context.run_config)

    def state_dir(context: Context) -> Path | None:
        return Path(str(context.node_config["state-dir"])) if "state-dir" in context.node_config else None

    @app.query()
    def identify(msg: Message, context: Context) -> Message:
        content = RecordDict({"identity": ConfigRecord({"hospital_id": hospital_id_of(context)})})
        return Message(content=content, reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        nonlocal service
        cfg = run_config(context)
        if service is None:  # a late hospital really misses the server's deadline
            service = HospitalService(late_seconds=cfg.federation.round_timeout + 2)
        instruction = wire.content_to_instruction(msg.content)
        reply = service.handle(hospital_id_of(context), cfg, instruction, state_dir(context))
        return Message(content=wire.reply_to_content(reply), reply_to=msg)

    return app


#: The app ``flwr run .`` loads (configuration from ``[tool.flwr.app.config]``).
app = build_client_app()
