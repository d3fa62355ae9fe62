"""Errors that fedsynth raises for problems in user input or in a run's state.

Every error names where the problem is (file, row, column, field or hospital) and what was
expected, so that a user can fix the input without reading code.
"""

from __future__ import annotations


class FedsynthError(Exception):
    """Base class of the errors fedsynth raises on purpose."""


class ConfigError(FedsynthError):
    """A configuration file or override is invalid (unknown key, wrong type, bad value)."""


class DataError(FedsynthError):
    """Input data is missing, unreadable or inconsistent with what was expected.

    ``where`` names the file and, where known, the row/column/field; ``expected`` says what the
    loader needed there.
    """

    def __init__(self, where: str, problem: str, expected: str | None = None) -> None:
        self.where = where
        self.problem = problem
        self.expected = expected
        message = f"{where}: {problem}"
        if expected:
            message += f" (expected {expected})"
        super().__init__(message)


class BudgetExhaustedError(FedsynthError):
    """A hospital was asked to train past its privacy budget."""


class RunStopped(FedsynthError):
    """The run was stopped (``flwr stop``, a signal) before it finished: the server writes no final
    model, synthetic data, privacy.json or summary.json, and the run resumes from its last
    checkpoint."""
