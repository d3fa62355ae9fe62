"""What loading a data set did beyond reading records: notes for the user and a memory estimate.

A loader never changes what it trains on without saying so. Everything it did that a user could
not guess from the configuration (images resized, files skipped, arrays in the input it does not
read) becomes a note, which ``fedsynth check-data`` and ``fedsynth simulate`` print before any
training starts.
"""

from __future__ import annotations

from dataclasses import dataclass

MB = 1024 * 1024


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes held while loading and afterwards, as the size guards compare them with the limit.

    ``source_bytes``: input arrays read into memory at once (an npz file's arrays);
    ``working_bytes``: the largest conversion working set (images decoded to float64, filtered and
    resized); ``records_bytes``: the pooled records as fedsynth holds them (float32 images and
    clinical values, int64 labels, patient ids); ``copies``: how many times the records are held
    (the pool, and its partition into hospitals and the test split). Models and the simulation
    engine's workers come on top: this is the data alone.
    """

    source_bytes: int
    working_bytes: int
    records_bytes: int
    copies: int = 2

    @property
    def total_bytes(self) -> int:
        return self.source_bytes + self.working_bytes + self.copies * self.records_bytes

    @property
    def total_mb(self) -> float:
        return self.total_bytes / MB

    def describe(self) -> str:
        """The estimate and its parts, e.g. "1.2 MB: 0.3 MB input arrays + 0.5 MB working set + 2 x 0.2 MB records"."""
        return (
            f"{_mb(self.total_bytes)}: {_mb(self.source_bytes)} input arrays + {_mb(self.working_bytes)} working set"
            f" + {self.copies} x {_mb(self.records_bytes)} records"
        )


@dataclass(frozen=True)
class LoadReport:
    """The notes of one loader run and its memory estimate (None where the loader made none)."""

    notes: tuple[str, ...] = ()
    memory: MemoryEstimate | None = None


def _mb(nbytes: int) -> str:
    return f"{nbytes / MB:.1f} MB"
