"""Reading CSV files into named string columns, with row numbers for error messages.

Rows are numbered as in a spreadsheet: the header is row 1, the first data row is row 2.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from fedsynth.errors import DataError


@dataclass(frozen=True)
class CsvTable:
    """A CSV file as columns of stripped strings."""

    path: Path
    header: tuple[str, ...]
    columns: dict[str, list[str]]

    @property
    def name(self) -> str:
        return self.path.name

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def where(self, i: int, column: str | None = None) -> str:
        """Location of data row ``i`` (0-based), e.g. "clinical.csv, row 5, column 'age'"."""
        text = f"{self.name}, row {i + 2}"
        return text if column is None else f"{text}, column '{column}'"

    def require(self, column: str, purpose: str) -> list[str]:
        """The cells of ``column``; DataError naming the file and column if it is missing."""
        if column not in self.columns:
            raise DataError(
                f"{self.name}, column '{column}'",
                "missing column",
                f"a column '{column}' ({purpose}); the header has {list(self.header)}",
            )
        return self.columns[column]


def read_csv(path: str | Path, purpose: str) -> CsvTable:
    """Read a CSV with a header row; every data row must have as many cells as the header."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "file not found", f"a CSV file ({purpose})")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(str(path), f"cannot be read as CSV: {exc}", f"a UTF-8 CSV file ({purpose})") from exc
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()  # trailing blank lines carry no record
    if not rows:
        raise DataError(path.name, "empty file", f"a header row and data rows ({purpose})")
    header = tuple(cell.strip() for cell in rows[0])
    if any(not h for h in header):
        raise DataError(f"{path.name}, row 1", f"empty column name in header {list(header)}", "named columns")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(f"{path.name}, row 1", f"duplicate column names {dupes}", "distinct column names")
    if len(rows) == 1:
        raise DataError(path.name, "no data rows", f"at least one data row ({purpose})")
    columns: dict[str, list[str]] = {h: [] for h in header}
    for i, row in enumerate(rows[1:]):
        if not any(cell.strip() for cell in row):
            raise DataError(f"{path.name}, row {i + 2}", "blank row inside the data", "one record per row")
        if len(row) != len(header):
            raise DataError(f"{path.name}, row {i + 2}", f"{len(row)} cells", f"{len(header)} cells as in the header")
        for h, cell in zip(header, row):
            columns[h].append(cell.strip())
    return CsvTable(path=path, header=header, columns=columns)
