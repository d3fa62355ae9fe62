"""A hospital's per-run state on its own disk.

Layout under the site's state directory::

    ledger.jsonl, ledger.mirror.jsonl        every mechanism run, all runs (fedsynth.hospital.ledger_file)
    runs/<run id>/state-rNNNNN.pt            model + optimizer state and the reply sent, per round
    runs/<run id>/site-log.jsonl             what stays on the site: losses on real records,
                                             refusals, plans, damaged files skipped

State files are checksummed (:mod:`fedsynth.persistence`); a few recent rounds are kept so that a
server that resumes from an earlier round finds the matching state. Keying by run means two runs
(or two `flwr run` on the same folder) never share or prune each other's state.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from fedsynth.persistence import RoundFiles


def run_directory(state_dir: str | Path, run_id: str) -> Path:
    """The folder of one run's state (the run id made safe as a folder name)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id) or "run"
    return Path(state_dir) / "runs" / safe


class HospitalStore(RoundFiles):
    """Round files of one hospital's state for one run."""

    def __init__(self, state_dir: str | Path, run_id: str, keep: int = 4) -> None:
        super().__init__(run_directory(state_dir, run_id), "state-r", keep)


class SiteLog:
    """Append-only JSON lines that stay on the site (never sent to the server)."""

    def __init__(self, state_dir: str | Path, run_id: str) -> None:
        self.path = run_directory(state_dir, run_id) / "site-log.jsonl"

    def write(self, kind: str, **fields: object) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"time": time.time(), "kind": kind, **fields}
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
