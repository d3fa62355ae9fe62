"""Progress on stderr (rich): the server's rounds, and the phases of the audit and the report.

A long phase (the audit's scores, the centralized baseline's rounds, the report's metrics) shows
its name, a bar, steps done of all, the time elapsed and the time left, so a run that trains a
second generator for minutes after its last round is not silent. The phase bars are drawn only on
a terminal: on a pipe, in a log file or under pytest they print nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fedsynth.config.schema import RunConfig

#: A phase's report of one finished step: (steps done, steps in all).
StepCallback = Callable[[int, int], None]


def progress_bar(console: Console, disable: bool = False) -> Progress:
    """fedsynth's bar: phase name, bar, done/all, elapsed and time left."""
    return Progress(
        TextColumn("[bold]fedsynth[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )


class RoundPrinter:
    """A progress bar over rounds plus one line per finished round."""

    def __init__(self, config: RunConfig, console: Console | None = None) -> None:
        self.config = config
        self.console = console or Console(stderr=True)
        self.progress = progress_bar(self.console)
        self.task = self.progress.add_task("rounds", total=config.train.num_rounds)

    def __enter__(self) -> RoundPrinter:
        self.progress.start()
        mechanism = "Gaussian mechanism" if self.config.train.schedule == "gaussian" else "DP-SGD"
        mode = mechanism if self.config.privacy.enabled else "NON-PRIVATE baseline"
        self.console.print(
            f"{self.config.federation.num_hospitals} hospitals, strategy {self.config.federation.strategy}, "
            f"{self.config.train.num_rounds} rounds, {mode}, run folder {self.config.out_dir}"
        )
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def round_done(self, record: dict) -> None:
        eps = record.get("max_epsilon")
        eps_text = "n/a (non-private)" if eps is None else f"{eps:.3g}"
        refused = f", refused {sorted(record['refused'])}" if record.get("refused") else ""
        failed = f", failed {sorted(record['failed'])}" if record.get("failed") else ""
        self.console.print(
            f"round {record['round']:>3} \\[{record['phase']}] accepted {len(record['accepted'])}"
            f"{refused}{failed}, max epsilon {eps_text}, {record['seconds']:.1f} s, "
            f"{(record['bytes_down'] + record['bytes_up']) / 1e6:.2f} MB"
        )
        self.progress.advance(self.task)

    def finished(self, summary: dict) -> None:
        """The run's privacy status in words (and the audit's scores when present)."""
        scores = ""
        if "tstr" in summary:
            tstr, trtr = summary["tstr"], summary["trtr"]
            scores = (
                f"TSTR MCC {_fmt(tstr.get('mcc'))} AUROC {_fmt(tstr.get('auroc'))} | "
                f"TRTR MCC {_fmt(trtr.get('mcc'))} AUROC {_fmt(trtr.get('auroc'))} | "
            )
        self.console.print(f"{scores}{summary['label']}")
        for hid, refusals in summary.get("refusals", {}).items():
            self.console.print(f"hospital {hid} refused {len(refusals)} round(s): {refusals[0]['reason']}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class PhaseProgress:
    """One bar per long phase (name, bar, done/all, elapsed, time left) on stderr.

    Use as a context manager; :meth:`phase` starts the next phase (the previous one is left as
    done), :meth:`advance` counts one step of it, :meth:`step_callback` hands a phase's counter to
    code that only reports (done, total). Drawn only when ``console`` is a terminal, unless
    ``enabled`` says otherwise, so tests and piped runs stay quiet.
    """

    def __init__(self, console: Console | None = None, enabled: bool | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = progress_bar(
            self.console, disable=not (self.console.is_terminal if enabled is None else enabled)
        )
        self.task: TaskID | None = None
        self.name = ""

    def __enter__(self) -> PhaseProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def phase(self, name: str, total: int, step: str | None = None) -> None:
        """Start phase ``name`` of ``total`` steps, the first named ``step``."""
        self.name = name
        self.task = self.progress.add_task(f"{name}: {step}" if step else name, total=total)

    def advance(self, step: str | None = None) -> None:
        """One step of the current phase done; ``step`` names the next one (shown after the phase)."""
        if self.task is None:
            return
        self.progress.update(self.task, advance=1, description=f"{self.name}: {step}" if step else self.name)

    def step_callback(self) -> StepCallback:
        """A callback setting the current phase to (done, total) steps."""

        def report(done: int, total: int) -> None:
            if self.task is not None:
                self.progress.update(self.task, completed=done, total=total)

        return report
