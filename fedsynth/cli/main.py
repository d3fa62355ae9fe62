"""``fedsynth``: command-line entry point (thin over the library)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedsynth.cli.bench import register as register_bench_command
from fedsynth.cli.check_data import register as register_check_data_command
from fedsynth.cli.deploy import register as register_deployment_commands
from fedsynth.cli.keys import app as keys_app
from fedsynth.cli.report import register as register_report_commands
from fedsynth.config import dumps_toml, load_config
from fedsynth.errors import FedsynthError
from fedsynth.evaluation.sample_size import score_headline

app = typer.Typer(
    name="fedsynth",
    help="Federated, differentially private synthesis of multimodal medical data (image + clinical table + label).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML run configuration (defaults apply to missing keys).")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one key, e.g. --set train.rounds_gan=4 --set privacy.enabled=false."),
]


def _load(config: Path | None, overrides: list[str] | None, out: Path | None):
    settings = list(overrides or [])
    if out is not None:
        settings.append(f'out_dir="{out}"')
    return load_config(config, settings)


@app.command()
def simulate(
    config: ConfigOption = None,
    set_: SetOption = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder to write (overrides out_dir).")] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the interrupted run in this folder (its config.toml and checkpoints)."),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="'flower' (Flower's simulation engine, Ray) or 'inprocess' (no Flower, same code).")
    ] = "flower",
    verbose: Annotated[bool, typer.Option(help="Show Flower's and Ray's own logs.")] = False,
) -> None:
    """Train N simulated hospitals with Flower's simulation engine and write a run folder.

    The run folder holds config.toml, metrics.jsonl, privacy.json, summary.json, model/ and
    synthetic/ (samples.npz, samples.png). Resources per hospital: simulation.num_cpus and
    simulation.num_gpus (fractional); device: simulation.device (auto, cpu, cuda[:N]).
    With --resume DIR the run continues after the last round DIR's server checkpointed; the
    hospitals restore their own saved state and keep every privacy-ledger entry.
    """
    from fedsynth.simulation import simulate as run_flower
    from fedsynth.simulation import simulate_in_process

    try:
        if engine not in ("flower", "inprocess"):
            raise FedsynthError(f"--engine {engine!r}: expected 'flower' or 'inprocess'")
        if resume is not None:
            if config is not None or set_ or out is not None:
                raise FedsynthError("--resume takes the run's own config.toml: drop --config/--set/--out")
            if not (resume / "config.toml").is_file():
                raise FedsynthError(f"{resume}: no config.toml, not a run folder")
            cfg = load_config(resume / "config.toml", [f'out_dir="{resume}"'])
        else:
            cfg = _load(config, set_, out)
            _refuse_existing(Path(cfg.out_dir))
        if engine == "flower":
            summary = run_flower(cfg, verbose=verbose, resume=resume is not None)
        else:
            summary = simulate_in_process(cfg, resume=resume is not None)
    except FedsynthError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    console.print(f"run folder: {cfg.out_dir}  ({score_headline(summary)})  {summary['label']}")
    if cfg.attack.threat_model != "none":
        from fedsynth.redteam.audit import audit_attack

        scores = audit_attack(cfg.out_dir)
        for target, sc in scores["targets"].items():
            console.print(f"attack {target}: ReRo@0.1 {sc['rero_01']:.3f}, exact {sc['exact']} of {sc['records']}")


#: The attack study's base when no --config is given: two hospitals, a small image encoder.
ATTACK_BASE = ["federation.num_hospitals=2", "model.image_channels=8"]


@app.command()
def attack(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the study's outputs.")],
    config: ConfigOption = None,
    set_: SetOption = None,
    engine: Annotated[str, typer.Option(help="'inprocess' (default) or 'flower' (Flower's simulation engine).")] = (
        "inprocess"
    ),
    quick: Annotated[bool, typer.Option(help="A reduced grid (fewer budgets, batches and records).")] = False,
    utility: Annotated[bool, typer.Option(help="Also train an honest run per budget for its TSTR utility.")] = True,
) -> None:
    """Red team: a malicious server against simulated hospitals, beside the reconstruction bounds.

    Runs the study's settings (threat model, budget, batch, bins) as real federated runs on the
    data of --config/--set (default: the built-in phantom), scores what the server recovered
    against the true records, and writes DIR/attack.csv (one row per true record per setting),
    DIR/cdf/<setting>.png, DIR/table.md and DIR/table.json (epsilon -> ReRo@0.1, worst-case and
    relaxed bounds, TSTR utility) and each run folder under DIR/runs/.
    """
    from fedsynth.redteam.experiment import default_settings, run_experiment

    try:
        if engine not in ("flower", "inprocess"):
            raise FedsynthError(f"--engine {engine!r}: expected 'flower' or 'inprocess'")
        if (out / "attack.csv").exists():
            raise FedsynthError(f"{out} already holds a study: choose another --out")
        base = load_config(config, [*([] if config is not None else ATTACK_BASE), *(set_ or [])])
        run_experiment(base, out, default_settings(quick), engine, log=console.print, utility=utility)
    except FedsynthError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    typer.echo((out / "table.md").read_text())


@app.command()
def prepare(
    config: ConfigOption = None,
    set_: SetOption = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder to prepare (overrides out_dir).")] = None,
) -> None:
    """Write the simulated hospitals' sites and the public schema, for `flwr run .` to train.

    Writes DIR/schema.json (the consortium's public schema, all the server reads), DIR/config.toml,
    and DIR/sites/hospital-i/ (each hospital's own records and site.toml: policy, device, faults).
    Then, before the first `flwr` command starts Flower's local SuperLink (it keeps that
    environment): export FEDSYNTH_SITES_DIR=$PWD/DIR/sites and
    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 (train in this environment); `flwr federation
    simulation-config @none/default local --num-supernodes N --client-resources-num-cpus 1`;
    `flwr run . --stream --run-config 'out_dir="DIR"'`; afterwards `fedsynth audit DIR` for the
    scores that need real records. The README and docs/scaling.md give the whole recipe.
    """
    from fedsynth.runfolder import RunFolder
    from fedsynth.simulation.sites import LATE_MARGIN_SECONDS, prepare_sites

    try:
        cfg = _load(config, set_, out)
        _refuse_existing(Path(cfg.out_dir))
        prepare_sites(cfg, cfg.federation.round_timeout + LATE_MARGIN_SECONDS)
        RunFolder(cfg.out_dir).write_config(cfg)
    except FedsynthError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    console.print(f"prepared {cfg.federation.num_hospitals} sites in {cfg.out_dir}/sites")


@app.command()
def audit(run_dir: Annotated[Path, typer.Argument(help="Run folder of a finished simulation.")]) -> None:
    """Score a finished simulated run with the real records the simulation owns: TSTR, TRTR and,
    when configured, the centralized baseline (whose spend is composed into privacy.json)."""
    from fedsynth.simulation.audit import audit_run

    try:
        if not (run_dir / "config.toml").is_file() or not (run_dir / "summary.json").is_file():
            raise FedsynthError(f"{run_dir}: no config.toml and summary.json (not a finished run folder)")
        summary = audit_run(load_config(run_dir / "config.toml", [f'out_dir="{run_dir}"']))
    except FedsynthError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    console.print(f"{score_headline(summary, trtr=True)}  {summary['label']}")


def _refuse_existing(target: Path) -> None:
    if (target / "summary.json").exists() or (target / "metrics.jsonl").exists() or (target / "sites").exists():
        raise FedsynthError(f"{target} already holds a run: choose another --out, or --resume it")


@app.command("config")
def show_config(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Print the resolved configuration (defaults + file + overrides) as TOML."""
    try:
        cfg = _load(config, set_, None)
    except FedsynthError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    typer.echo(dumps_toml(cfg))


register_report_commands(app)
register_bench_command(app)
register_check_data_command(app)
app.add_typer(keys_app, name="keys")
register_deployment_commands(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
