"""Clinical tables from string cells: type inference, public bounds and encoding.

With a schema file (JSON ``{"columns": [{"name", "kind", "low", "high", "categories"}]}``) the
table must have exactly the declared columns; numeric bounds and category lists are taken from
the file and the schema's ``bounds_source`` is "public". Numeric values outside the declared
bounds are kept as they are (models clip them when scaling).

Without a schema file, kinds are inferred: a column whose cells all parse as numbers is numeric,
one with no number at all is categorical (sorted categories). A column that mixes numbers and
other values ("forty" among ages, "1" among sexes) is refused, naming the rows and values of the
odd ones out: it is never re-typed; fix the cells or declare the column's kind in the schema file.
Numeric bounds are the data's min/max (widened by 1 if constant) and ``bounds_source`` is "data",
which the privacy report flags: such bounds are not differentially private.

With a schema file the declared kind decides: a numeric column's non-numbers and a categorical
column's unknown categories are all named at once (up to ``MAX_CELLS_NAMED``).

Missing cells ("", "NA", "NaN", "N/A", "null") and infinite numbers are errors naming the row and
column; no record is dropped or imputed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedsynth.data.records import ColumnSpec
from fedsynth.errors import DataError

MISSING_TOKENS = frozenset({"", "na", "nan", "n/a", "null"})
#: Most offending cells one error message lists (the rest are counted).
MAX_CELLS_NAMED = 10

#: (row index, column) -> location text for messages.
Locator = Callable[[int, str], str]


@dataclass(frozen=True)
class ClinicalTable:
    columns: tuple[ColumnSpec, ...]
    #: float32 (n, len(columns)), categorical columns as codes; None if there are no columns.
    values: np.ndarray | None
    #: True if any bound or category list was fitted on the data.
    fitted: bool


def load_schema_file(path: str | Path) -> tuple[ColumnSpec, ...]:
    """Declared clinical columns from a schema JSON file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "file not found", "a schema JSON file (data.schema_file)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path.name}, line {exc.lineno}", f"invalid JSON: {exc.msg}", "a JSON object") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(str(path), f"cannot be read: {exc}", "a UTF-8 JSON file") from exc
    if not isinstance(doc, dict) or set(doc) != {"columns"} or not isinstance(doc["columns"], list):
        raise DataError(path.name, 'top level is not {"columns": [...]}', 'an object with one key "columns"')
    specs = []
    for i, entry in enumerate(doc["columns"]):
        where = f"{path.name}, columns[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise DataError(where, f"entry {entry!r} has no name", 'an object with a "name" string')
        where = f"{path.name}, column '{entry['name']}'"
        unknown = set(entry) - {"name", "kind", "low", "high", "categories"}
        if unknown:
            raise DataError(where, f"unknown keys {sorted(unknown)}", "name, kind, low, high, categories")
        kind = entry.get("kind")
        if kind == "numeric":
            low, high = entry.get("low"), entry.get("high")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
                raise DataError(where, f"low={low!r}, high={high!r}", "numbers low < high")
            if not (math.isfinite(low) and math.isfinite(high) and high > low):
                raise DataError(where, f"low={low!r}, high={high!r}", "finite bounds with high > low")
            specs.append(ColumnSpec(entry["name"], "numeric", float(low), float(high)))
        elif kind == "categorical":
            cats = entry.get("categories")
            if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
                raise DataError(where, f"categories={cats!r}", "a list of strings")
            if len(cats) < 2 or len(set(cats)) != len(cats):
                raise DataError(where, f"categories={cats!r}", "at least 2 distinct categories")
            specs.append(ColumnSpec(entry["name"], "categorical", categories=tuple(cats)))
        else:
            raise DataError(where, f"kind {kind!r}", "'numeric' or 'categorical'")
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(path.name, f"duplicate column names {dupes}", "each column declared once")
    return tuple(specs)


def build_clinical(
    cells: dict[str, list[str]],
    n: int,
    source: str,
    locate: Locator,
    declared: tuple[ColumnSpec, ...] | None,
) -> ClinicalTable:
    """Encode string ``cells`` (column -> n cells) into a clinical table.

    ``source`` names the input in column-level messages; ``locate(i, column)`` names a cell.
    """
    for name, column in cells.items():
        if len(column) != n:
            raise DataError(f"{source}, column '{name}'", f"{len(column)} values", f"{n} values, one per record")
        for i, cell in enumerate(column):
            if cell.strip().lower() in MISSING_TOKENS:
                raise DataError(locate(i, name), f"missing value {cell!r}", "a value in every cell (no NaN)")
    if declared is not None:
        specs = _match_declared(cells, source, declared)
        fitted = False
    else:
        specs = tuple(_infer(name, column, source, locate) for name, column in cells.items())
        fitted = bool(specs)
    if not specs:
        return ClinicalTable(columns=(), values=None, fitted=False)
    values = np.empty((n, len(specs)), dtype=np.float32)
    for j, spec in enumerate(specs):
        values[:, j] = _encode(spec, cells[spec.name], source, locate)
    return ClinicalTable(columns=specs, values=values, fitted=fitted)


def _match_declared(
    cells: dict[str, list[str]], source: str, declared: tuple[ColumnSpec, ...]
) -> tuple[ColumnSpec, ...]:
    names = {s.name for s in declared}
    for name in cells:
        if name not in names:
            raise DataError(
                f"{source}, column '{name}'",
                "unknown column (not in the schema file)",
                f"one of {sorted(names)}",
            )
    for spec in declared:
        if spec.name not in cells:
            raise DataError(
                f"{source}, column '{spec.name}'", "missing column declared in the schema file", "the column"
            )
    return declared


def _parse_number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _infer(name: str, column: list[str], source: str, locate: Locator) -> ColumnSpec:
    numbers = [_parse_number(c) for c in column]
    numeric = [i for i, v in enumerate(numbers) if v is not None]
    if numeric and len(numeric) < len(column):
        odd = [i for i, v in enumerate(numbers) if v is None]
        if len(odd) > len(numeric):
            odd, kind = numeric, "numbers among text values"
        else:
            kind = "not numbers"
        raise DataError(
            f"{source}, column '{name}'",
            f"mixes numbers and text: {len(odd)} of {len(column)} values are {kind}: "
            + _cells(odd, column, name, locate),
            "one kind per column: fix these cells, or declare the column's kind in data.schema_file; a "
            "column is never re-typed by guessing",
        )
    if len(numeric) == len(column):
        finite = [v for v in numbers if v is not None and math.isfinite(v)]
        if not finite:
            raise DataError(f"{source}, column '{name}'", "no finite value", "finite numbers")
        low, high = min(finite), max(finite)
        if high <= low:
            high = low + 1.0
        return ColumnSpec(name, "numeric", float(low), float(high))
    categories = tuple(sorted(set(column)))
    if len(categories) < 2:
        raise DataError(
            f"{source}, column '{name}'",
            f"a single category {categories[0]!r}",
            "at least 2 categories; declare them in data.schema_file or drop the column",
        )
    return ColumnSpec(name, "categorical", categories=categories)


def _encode(spec: ColumnSpec, column: list[str], source: str, locate: Locator) -> np.ndarray:
    """Values (numeric) or codes (categorical) of a column; every bad cell is named at once."""
    out = np.empty(len(column), dtype=np.float64)
    bad: list[int] = []
    if spec.kind == "numeric":
        for i, cell in enumerate(column):
            v = _parse_number(cell)
            if v is None:
                bad.append(i)
                continue
            if not (math.isfinite(v) and abs(v) < 1e38):
                raise DataError(locate(i, spec.name), f"value {cell!r} is NaN or Inf", "a finite number (float32)")
            out[i] = v
        what, expected = "not numbers", "a numeric value in every row (the schema file declares it numeric)"
    else:
        index = {c: k for k, c in enumerate(spec.categories)}
        for i, cell in enumerate(column):
            if cell in index:
                out[i] = index[cell]
            else:
                bad.append(i)
        what, expected = "unknown categories", f"one of {list(spec.categories)}"
    if len(bad) == 1:
        i = bad[0]
        problem = f"{column[i]!r} is not a number" if spec.kind == "numeric" else f"unknown category {column[i]!r}"
        raise DataError(locate(i, spec.name), problem, expected)
    if bad:
        raise DataError(
            f"{source}, column '{spec.name}'",
            f"{len(bad)} of {len(column)} values are {what}: {_cells(bad, column, spec.name, locate)}",
            expected,
        )
    return out


def _cells(rows: list[int], column: list[str], name: str, locate: Locator) -> str:
    """The cells at ``rows`` as "<location> = 'value'", the first ``MAX_CELLS_NAMED`` of them."""
    named = "; ".join(f"{locate(i, name)} = {column[i]!r}" for i in rows[:MAX_CELLS_NAMED])
    more = len(rows) - MAX_CELLS_NAMED
    return named + (f"; and {more} more" if more > 0 else "")
