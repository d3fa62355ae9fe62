"""The site's app gate: a SuperNode's task executor that runs only app bundles the site approved.

In a Flower deployment the SuperLink ships the app bundle (FAB) that every SuperNode executes, and
the bundle's own Python runs at the site, so the bundle *is* the code that touches patient records.
Flower's ``--trusted-entities`` check only verifies bundles signed through Flower Hub. fedsynth
therefore runs each hospital's SuperNode with ``--isolation process`` and executes its tasks here:
Flower's own SuperExec loop with one change, an executor that launches a task only when the
bundle's SHA-256 is in the site's ``node.approved_apps`` and otherwise refuses it, writing the
refusal to the site's own log (``<state>/node/refusals.jsonl``) and to stderr.

Run as ``python -m fedsynth.consortium.gate --runtime-api-address 127.0.0.1:PORT --site SITE_FILE
--parent-pid PID`` (``fedsynth site start`` does this).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fedsynth.site.config import Site, load_site

REFUSALS = "refusals.jsonl"


def node_state_dir(site: Site) -> Path:
    """Where the site keeps what its node process writes (app installs, refusals, logs)."""
    return site.state_path / "node"


class AppGate:
    """Wraps a Flower task executor: launches approved bundles, refuses every other one."""

    def __init__(self, inner, approved: set[str], on_refuse: Callable[[str, int], None]) -> None:
        self.inner = inner
        self.approved = approved
        self.on_refuse = on_refuse

    def launch(self, spec):  # flwr ExecutionSpec -> LaunchResult
        from flwr.supercore.superexec.executor import LaunchResult

        if spec.fab_hash not in self.approved:
            self.on_refuse(str(spec.fab_hash), int(spec.task_id))
            return LaunchResult.failed(f"app bundle {spec.fab_hash} is not approved by this site")
        return self.inner.launch(spec)

    def __getattr__(self, name: str):  # capacity, reconcile, close: the inner executor's
        return getattr(self.inner, name)


def refusal_logger(site: Site) -> Callable[[str, int], None]:
    """Log each refused bundle once per task to the site's node log and stderr."""
    seen: set[int] = set()
    path = node_state_dir(site) / REFUSALS
    path.parent.mkdir(parents=True, exist_ok=True)

    def refuse(fab_hash: str, task_id: int) -> None:
        if task_id in seen:
            return
        seen.add(task_id)
        record = {"time": time.time(), "app_hash": fab_hash, "task": task_id, "reason": "app bundle not approved"}
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(
            f"fedsynth site {site.hospital_id}: refused app bundle {fab_hash} (not in node.approved_apps)",
            file=sys.stderr,
            flush=True,
        )

    return refuse


def run_gate(runtime_api_address: str, site: Site, parent_pid: int | None = None) -> None:
    """Flower's SuperExec loop against the node's Runtime API, with the :class:`AppGate` executor."""
    from flwr.supercore.superexec import run_superexec as superexec
    from flwr.supercore.superexec.executor import SubprocessExecutor

    gate = AppGate(SubprocessExecutor(), set(site.config.node.approved_apps), refusal_logger(site))
    superexec.get_executor = lambda *args, **kwargs: gate  # this process runs only the gated loop
    superexec.run_superexec(runtime_api_address=runtime_api_address, insecure=True, parent_pid=parent_pid)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a site's app-gated task executor (see module docstring).")
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--site", required=True, type=Path)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    run_gate(args.runtime_api_address, load_site(args.site), args.parent_pid)


if __name__ == "__main__":
    main()
