"""Progress of the long phases after the rounds: the centralized baseline reports every round, and
the phase bars are drawn on a terminal only (quiet on pipes and under pytest)."""

from __future__ import annotations

import io
from pathlib import Path

from conftest import tiny_config
from rich.console import Console

from fedsynth.data import load_federation
from fedsynth.evaluation.run import pool as pool_datasets
from fedsynth.progress import PhaseProgress
from fedsynth.simulation.audit import centralized_baseline


def test_the_centralized_baseline_reports_each_of_its_rounds(tmp_path: Path) -> None:
    config = tiny_config(
        tmp_path / "run", "federation.num_hospitals=2", 'model.latent_model="gaussian"', 'train.schedule="gaussian"'
    )
    fed = load_federation(config.data, config.federation.num_hospitals, config.seed)
    pool, _ = pool_datasets(list(fed.hospitals))
    events: list[tuple[int, int]] = []
    tstr, mechanism_events = centralized_baseline(config, pool, fed.test, on_round=lambda d, t: events.append((d, t)))
    rounds = config.train.num_rounds
    assert rounds >= 2 and "skipped" not in tstr
    assert events == [(r, rounds) for r in range(1, rounds + 1)]
    assert len(mechanism_events) == rounds


def _phases(progress: PhaseProgress) -> None:
    with progress:
        progress.phase("centralized baseline rounds", 3)
        callback = progress.step_callback()
        for done in (1, 2, 3):
            callback(done, 3)
        progress.phase("audit", 2, "TSTR")
        progress.advance("TRTR")
        progress.advance()


def test_phase_bars_name_the_phase_on_a_terminal_and_print_nothing_elsewhere() -> None:
    terminal = io.StringIO()
    progress = PhaseProgress(Console(file=terminal, force_terminal=True, width=120))
    _phases(progress)
    tasks = {t.description: (t.completed, t.total) for t in progress.progress.tasks}
    assert tasks == {"centralized baseline rounds": (3, 3), "audit": (2, 2)}
    shown = terminal.getvalue()
    assert "centralized baseline rounds" in shown and "3/3" in shown and "ETA" in shown

    pipe = io.StringIO()
    _phases(PhaseProgress(Console(file=pipe)))
    assert pipe.getvalue() == ""
