"""Scores on too few records: what the console and the report say instead of a headline number.

An evaluation on a test split with fewer than ``MIN_TEST_RECORDS_PER_CLASS`` records in some class
(``fedsynth.data.guards``) is noisy enough that MCC 1.000 on four records means nothing. Such
scores stay in summary.json and evaluation.json, next to their ``warnings``; the console line and
the report's verdicts show the warning in their place.
"""

from __future__ import annotations

from typing import Any

from fedsynth.data.guards import MIN_TEST_RECORDS_PER_CLASS


def score_warnings(scores: dict[str, Any] | None) -> list[str]:
    """The warnings attached to one ``train_on_test_on`` result (none for older run folders)."""
    return list((scores or {}).get("warnings") or [])


def score_headline(summary: dict[str, Any], trtr: bool = False) -> str:
    """The console's score line for a run's summary: "TSTR MCC 0.71" (and TRTR with ``trtr``),
    or, when the scores carry a warning, the warning instead of the numbers."""
    tstr_scores, trtr_scores = summary.get("tstr") or {}, summary.get("trtr") or {}
    warnings = score_warnings(tstr_scores) or (score_warnings(trtr_scores) if trtr else [])
    if warnings:
        return f"TSTR MCC not reported: {warnings[0]}"
    line = f"TSTR MCC {tstr_scores.get('mcc')}"
    return f"{line}  TRTR MCC {trtr_scores.get('mcc')}" if trtr else line


def evaluation_size_verdict(small_test: str | None) -> dict[str, str]:
    """The report's ``evaluation_size`` verdict: "warn" with the warning, or "pass"."""
    if small_test:
        return {"level": "warn", "text": small_test}
    return {
        "level": "pass",
        "text": f"the held-out test split has at least {MIN_TEST_RECORDS_PER_CLASS} records in every class",
    }
