"""Per-round progress display for the server (rich)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fedsynth.config.schema import RunConfig


class RoundPrinter:
    """A progress bar over rounds plus one line per finished round."""

    def __init__(self, config: RunConfig, console: Console | None = None) -> None:
        self.config = config
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]fedsynth[/bold] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
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
