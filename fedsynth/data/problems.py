"""Per-file problems of a folder of inputs, reported all at once as a table (file, field, problem).

A reader of one file raises :class:`FileProblemError` for what is wrong with it; the loader collects
them for every file and raises one :class:`FileProblemsError` listing them all, so a user fixes a
folder in one pass instead of one file per run. With the loader's skip option the refused files
are left out and a note says how many and which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedsynth.errors import DataError


@dataclass(frozen=True)
class FileProblem:
    """One problem of one file: the file (relative path), the field (header keyword, or what part
    of the file) and what is wrong, with what was expected."""

    file: str
    field: str
    problem: str


class FileProblemError(DataError):
    """What is wrong with one field of one file (collected into a :class:`FileProblemsError`)."""

    def __init__(self, file: str, field: str, problem: str, expected: str | None = None) -> None:
        super().__init__(f"{file}, field {field}", problem, expected)
        self.file = file
        self.field = field

    def as_problem(self) -> FileProblem:
        text = self.problem if not self.expected else f"{self.problem} (expected {self.expected})"
        return FileProblem(self.file, self.field, text)


class FileProblemsError(DataError):
    """Every refused file of a folder, as a table; ``problems`` holds the rows."""

    def __init__(self, where: str, problems: Sequence[FileProblem], total_files: int, expected: str) -> None:
        self.problems = list(problems)
        refused = len({p.file for p in self.problems})
        super().__init__(where, f"{refused} of {total_files} files refused", expected)
        self.args = (f"{self.args[0]}\n{problem_table(self.problems)}",)


def problem_table(problems: Sequence[FileProblem], indent: str = "  ") -> str:
    """The problems as an aligned text table with the header ``file  field  problem``."""
    rows = [("file", "field", "problem"), *((p.file, p.field, p.problem) for p in problems)]
    widths = [max(len(r[k]) for r in rows) for k in range(2)]
    return "\n".join(f"{indent}{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}".rstrip() for r in rows)
