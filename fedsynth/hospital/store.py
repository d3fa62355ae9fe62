"""A hospital's state on its own disk, one file per finished round (``state-rNNNNN.pt``).

A few recent rounds are kept so that a server that resumes from an earlier round finds the
matching hospital state.
"""

from __future__ import annotations

from pathlib import Path

from fedsynth.persistence import RoundFiles


class HospitalStore(RoundFiles):
    """Round files of one hospital's state directory."""

    def __init__(self, directory: str | Path, keep: int = 4) -> None:
        super().__init__(directory, "state-r", keep)
