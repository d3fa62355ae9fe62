"""A site's privacy ledger on its own disk: append-only, hash-chained, mirrored, never pruned.

The ledger is the record of every mechanism run on the site's patients, over every run: it must
never lose an entry, or the site would under-report what it spent. It lives in
``<state_dir>/ledger.jsonl`` and a second copy ``ledger.mirror.jsonl``; every line is one event
``{"seq": k, "event": {...}, "chain": sha256(previous chain + event)}``, appended and fsync'd to
both copies *before* the mechanism runs (a crash mid-training leaves the event counted: epsilon can
be over- but never under-reported).

Reading verifies both copies line by line. A copy that is damaged (a torn last line from a crash
mid-append, or a changed byte anywhere) is set aside in favour of the other copy when that one
verifies at least as far, with a message, and is rewritten from it. When neither copy verifies, or
the two disagree, :class:`LedgerDamaged` is raised and the site refuses to train: it cannot know
what it has spent.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from fedsynth.errors import FedsynthError
from fedsynth.persistence import write_atomic
from fedsynth.privacy.accounting import MechanismEvent

PRIMARY = "ledger.jsonl"
MIRROR = "ledger.mirror.jsonl"
_GENESIS = "fedsynth-ledger"


class LedgerDamaged(FedsynthError):
    """Neither copy of a site's ledger verifies (or they disagree): the site must not train."""


def _chain(previous: str, event: dict) -> str:
    return hashlib.sha256((previous + json.dumps(event, sort_keys=True)).encode()).hexdigest()


def _line(seq: int, event: dict, chain: str) -> str:
    return json.dumps({"seq": seq, "event": event, "chain": chain}, sort_keys=True) + "\n"


def _verify(path: Path) -> tuple[list[dict], str | None]:
    """(verified events, problem) of one copy; problem is None when every line verifies."""
    if not path.exists():
        return [], None
    events: list[dict] = []
    previous = _GENESIS
    for number, text in enumerate(path.read_text(errors="replace").splitlines(keepends=True), start=1):
        try:
            entry = json.loads(text)
            ok = (
                text.endswith("\n")
                and entry["seq"] == len(events)
                and entry["chain"] == _chain(previous, entry["event"])
            )
        except (json.JSONDecodeError, KeyError, TypeError):
            ok = False
        if not ok:
            return events, f"{path}, line {number}: does not verify (torn or altered entry)"
        events.append(entry["event"])
        previous = entry["chain"]
    return events, None


class LedgerFile:
    """The two on-disk copies of one site's ledger."""

    def __init__(self, directory: str | Path, warn: Callable[[str], None] | None = None) -> None:
        self.directory = Path(directory)
        self.warn = warn

    @property
    def paths(self) -> tuple[Path, Path]:
        return self.directory / PRIMARY, self.directory / MIRROR

    def events(self) -> list[MechanismEvent]:
        """Every event on record, verified (repairing a damaged copy from the intact one)."""
        return [MechanismEvent.from_dict(e) for e in self._load()]

    def _load(self) -> list[dict]:
        if not any(p.exists() for p in self.paths):
            return []  # a site that has never trained
        copies = []
        for path in self.paths:
            events, problem = _verify(path) if path.exists() else ([], f"{path}: missing")
            copies.append((events, problem, path))
        (a, a_problem, _), (b, b_problem, _) = copies
        if a_problem is None and b_problem is None:
            if a != b:
                raise LedgerDamaged(
                    f"{self.paths[0]} and {self.paths[1]} disagree ({len(a)} vs {len(b)} entries): "
                    "restore the site's state directory from a backup"
                )
            return a
        good, bad = sorted(copies, key=lambda c: (c[1] is None, len(c[0])), reverse=True)
        if good[1] is not None or bad[0] != good[0][: len(bad[0])]:
            raise LedgerDamaged(
                f"the site's ledger cannot be trusted ({a_problem or 'primary verifies'}; "
                f"{b_problem or 'mirror verifies'}): the site refuses to train until its state directory "
                "is restored from a backup"
            )
        self._say(f"{bad[1]}; using the intact copy {good[2]} ({len(good[0])} entries) and rewriting {bad[2]}")
        self._rewrite(bad[2], good[0])
        return good[0]

    def append(self, event: MechanismEvent) -> None:
        """Record ``event`` durably in both copies (call before running the mechanism)."""
        events = self._load()
        previous = _GENESIS
        for e in events:
            previous = _chain(previous, e)
        entry = event.to_dict()
        line = _line(len(events), entry, _chain(previous, entry))
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in self.paths:
            with open(path, "a") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())

    def _rewrite(self, path: Path, events: list[dict]) -> None:
        previous, lines = _GENESIS, []
        for seq, event in enumerate(events):
            previous = _chain(previous, event)
            lines.append(_line(seq, event, previous))
        write_atomic(path, "".join(lines).encode())

    def _say(self, message: str) -> None:
        if self.warn is not None:
            self.warn(message)
