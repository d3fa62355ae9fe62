"""The Flower ClientApp: one site's :class:`~fedsynth.hospital.service.HospitalService` behind Flower.

A node finds its site file, in this order:

- node config ``site-file`` (a real deployment: the site's own TOML file on its own disk);
- in Flower's simulation engine (node config ``partition-id``), ``<sites_dir>/hospital-<id>/site.toml``
  where ``sites_dir`` is bound by ``fedsynth simulate`` or taken from the environment variable
  ``FEDSYNTH_SITES_DIR`` (``flwr run .`` after ``fedsynth prepare``).

The run configuration the server sends is never read here: everything a hospital needs comes from
its site file, and the server's requests arrive inside each instruction's job.
"""

from __future__ import annotations

import os
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedsynth.errors import ConfigError
from fedsynth.federation import wire
from fedsynth.hospital.service import HospitalService
from fedsynth.site.config import SITE_FILE, load_site

SITES_ENV = "FEDSYNTH_SITES_DIR"


def site_file_of(context: Context, sites_dir: Path | None) -> Path:
    """The site file this node serves (see the module docstring)."""
    if "site-file" in context.node_config:
        return Path(str(context.node_config["site-file"]))
    root = sites_dir or (Path(os.environ[SITES_ENV]) if os.environ.get(SITES_ENV) else None)
    if "partition-id" in context.node_config and root is not None:
        return root / f"hospital-{int(context.node_config['partition-id'])}" / SITE_FILE
    raise ConfigError(
        "this node has no site file: set node config 'site-file' (deployment), or run the simulation "
        f"through `fedsynth simulate` or with {SITES_ENV} pointing at a folder written by `fedsynth prepare`"
    )


def build_client_app(sites_dir: Path | None = None, mods: list | None = None) -> ClientApp:
    """A ClientApp serving the site named by each node's config; ``mods`` are Flower client mods."""
    app = ClientApp(mods=mods or [])
    services: dict[Path, HospitalService] = {}

    def service_for(context: Context) -> HospitalService:
        path = site_file_of(context, sites_dir)
        if path not in services:  # resident for the life of this process
            services[path] = HospitalService(load_site(path))
        return services[path]

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        service = service_for(context)
        what = wire.query_of(msg.content)
        if what == "ledger":
            content = wire.ledger_to_content(service.hospital_id, service.ledger_report())
        else:
            content = wire.identity_to_content(service.hospital_id)
        return Message(content=content, reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        service = service_for(context)
        instruction = wire.content_to_instruction(msg.content)
        reply = service.handle(instruction)
        return Message(content=wire.reply_to_content(reply, instruction), reply_to=msg)

    return app
