"""Simulation overhead and scale: fedsynth's engines against one plain loop over the same work.

For N hospitals (phantom records, the autoencoder phase of the ``gan`` schedule, DP-SGD with
Poisson batches) every variant trains the same rounds of the same local steps on the same site
partitions, and its wall time is taken from the first hospital built to the last round's
aggregate (no audit, no sampling):

- ``plain loop``: the hospitals' local work back to back in this process, as a researcher would
  write it by hand: one :class:`~fedsynth.hospital.hospital.Hospital` per site (models, data and
  Opacus engines built once), each round every hospital trains from the global weights, then a
  weighted mean. No service, ledger file, stored state, wire or server;
- ``in-process, 1 worker``: ``fedsynth simulate --engine inprocess`` with
  ``simulation.workers = 1`` (every hospital served in the server's process);
- ``in-process, W workers``: the same with the default resident workers (one per core);
- ``flower``: Flower's simulation engine (Ray), fedsynth's ServerApp and ClientApp;
- ``naive flower+opacus``: a straightforward assembly a user might write first: Flower's stock
  ``FedAvg`` and a ClientApp that, for every round, reads its partition, builds the network,
  ``PrivacyEngine().make_private`` and a ``DataLoader`` again, trains, and sends the weights back.

Ratios are against the plain loop. Memory: the peak resident set (``VmHWM``) of every process the
variant ran in (server and workers) per hospital; Flower's Ray processes are not measured.
Numbers depend on the machine and its load; nothing here is asserted by the tests.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from fedsynth.bench.measure import ratio
from fedsynth.config import RunConfig, load_config

#: Variant names, in table order.
VARIANTS = ("plain loop", "in-process, 1 worker", "in-process, workers", "flower", "naive flower+opacus")


@dataclass(frozen=True)
class EngineSize:
    """The federations measured: hospital counts, records per hospital, rounds and steps."""

    hospitals: tuple[int, ...] = (3, 8, 32)
    records_per_hospital: int = 200
    rounds: int = 3
    local_steps: int = 20
    batch_size: int = 32
    image_size: int = 32
    variants: tuple[str, ...] = VARIANTS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown:
            raise ValueError(f"unknown engine variant(s) {unknown} (expected some of {list(VARIANTS)})")
        if min(self.hospitals, default=0) < 1 or self.records_per_hospital < self.batch_size or self.rounds < 1:
            raise ValueError(f"engine sizes: need hospitals >= 1, records >= batch and rounds >= 1, got {self}")


@dataclass(frozen=True)
class EngineRun:
    """One variant at one N: wall seconds and peak resident bytes summed over its processes."""

    variant: str
    hospitals: int
    seconds: float
    peak_bytes: int | None
    workers: int


def bench_config(n: int, size: EngineSize, out: Path, *extra: str) -> RunConfig:
    """The run configuration of the measured work for ``n`` hospitals."""
    total = int(np.ceil(n * size.records_per_hospital / 0.8))  # 20% held out as the test split
    return load_config(
        None,
        [
            f'out_dir="{out}"',
            f"federation.num_hospitals={n}",
            f"data.phantom_records={total}",
            f"data.image_size={size.image_size}",
            "data.min_records_per_hospital=10",
            "model.image_channels=8",
            f"train.rounds_autoencoder={size.rounds}",
            "train.rounds_gan=0",
            f"train.local_steps_autoencoder={size.local_steps}",
            f"train.batch_size={size.batch_size}",
            f"privacy.sample_rate={size.batch_size / size.records_per_hospital}",
            'simulation.device="cpu"',
            "evaluation.num_synthetic=20",
            *extra,
        ],
    )


def bench_engines(size: EngineSize, log: Callable[[str], None] = lambda _: None) -> list[EngineRun]:
    """Every variant at every N (see the module docstring)."""
    from fedsynth.simulation.workers import available_cores

    runs = []
    root = Path(tempfile.mkdtemp(prefix="fedsynth-bench-engines-"))
    try:
        # Warm-up, not recorded: imports and first-use initialization would otherwise be charged to
        # whichever variant runs first.
        _plain_loop(1, replace(size, rounds=1, local_steps=2), root / "warm-up")
        for n in size.hospitals:
            for variant in size.variants:
                out = root / f"{n}-{variant.replace(' ', '-').replace(',', '')}"
                log(f"engines: {variant}, {n} hospitals")
                run = _VARIANTS[variant](n, size, out)
                runs.append(run)
                log(f"engines: {variant}, {n} hospitals: {run.seconds:.1f} s ({available_cores()} cores)")
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return runs


# -- the variants --------------------------------------------------------------------------------
def _plain_loop(n: int, size: EngineSize, out: Path, *extra: str) -> EngineRun:
    from fedsynth.simulation.sites import prepare_sites

    config = bench_config(n, size, out, *extra)
    schema, sites = prepare_sites(config, late_seconds=0.0)
    peak = _reset_peak()
    start = time.perf_counter()
    plain_loop(config, schema, sites)
    seconds = time.perf_counter() - start
    return EngineRun("plain loop", n, seconds, _peak(peak), 1)


def plain_loop(config: RunConfig, schema, sites: dict) -> dict[str, np.ndarray]:  # noqa: ANN001
    """The hospitals' local work back to back, by hand: each round every hospital trains from the
    global weights, then their plain mean (fedsynth's default rule when record counts stay
    private); the final global weights. With ``privacy.reproducible_noise`` each hospital draws the
    streams its site would draw (ledger index = round - 1), so the result can be compared with an
    engine's run of the same configuration."""
    from fedsynth.aggregation import weighted_mean
    from fedsynth.data.records_file import load_records
    from fedsynth.federation.server import make_job
    from fedsynth.hospital.hospital import Hospital
    from fedsynth.hospital.plan import resolve_plan
    from fedsynth.privacy.ledger import PrivacyLedger
    from fedsynth.privacy.randomness import Randomness, ReproducibleRandomness, SecureRandomness
    from fedsynth.protocol import RoundInstruction

    job = make_job(config, schema, "bench")
    hospitals, randomness = [], []
    for hid, site in sorted(sites.items()):
        data = load_records(site.data_path)
        earlier = PrivacyLedger(job.privacy.delta, job.privacy.accountant, [])
        plan = resolve_plan(job.privacy, job.train, site.policy, len(data), earlier, job.run_id)
        if isinstance(plan, str):
            raise ValueError(f"hospital {hid}: {plan}")
        hospitals.append(Hospital(hid, data, job, plan, "cpu"))
        source: Randomness = ReproducibleRandomness(job.seed, hid) if plan.reproducible else SecureRandomness()
        randomness.append(source)
    weights = hospitals[0].model.weights()
    for server_round, phase in enumerate(config.train.phases, start=1):
        updates = []
        for hospital, source in zip(hospitals, randomness, strict=True):
            instruction = RoundInstruction(server_round=server_round, phase=phase, weights=weights, job=job)
            update, _ = hospital.train_round(instruction, source.mechanism(server_round - 1))
            updates.append((update, 1.0))
        weights = {**weights, **weighted_mean(updates)}
    return weights


def _in_process(workers: int | None) -> Callable[[int, EngineSize, Path], EngineRun]:
    def run(n: int, size: EngineSize, out: Path) -> EngineRun:
        from fedsynth.federation.server import run_federation
        from fedsynth.simulation.engines import worker_transport
        from fedsynth.simulation.sites import prepare_sites
        from fedsynth.simulation.workers import plan_workers

        extra = [] if workers is None else [f"simulation.workers={workers}"]
        config = bench_config(n, size, out, *extra)
        schema, sites = prepare_sites(config, late_seconds=0.0)
        plan = plan_workers(config.simulation, sorted(sites))
        peak = _reset_peak()
        start = time.perf_counter()
        with worker_transport(sites, plan) as transport:
            run_federation(config, schema, transport)
            seconds = time.perf_counter() - start
            worker_peaks = [_peak_of(pid) for pid in getattr(transport, "pids", [])]
        main = _peak(peak)
        total = None if main is None or None in worker_peaks else main + sum(worker_peaks)  # type: ignore[arg-type]
        name = "in-process, 1 worker" if workers == 1 else "in-process, workers"
        return EngineRun(name, n, seconds, total, plan.workers)

    return run


def _flower(n: int, size: EngineSize, out: Path) -> EngineRun:
    from flwr.simulation import run_simulation

    from fedsynth.flower.client import build_client_app
    from fedsynth.flower.server import build_server_app
    from fedsynth.simulation.console import engine_console
    from fedsynth.simulation.engines import backend_config
    from fedsynth.simulation.sites import LATE_MARGIN_SECONDS, prepare_sites

    config = bench_config(n, size, out)
    prepare_sites(config, config.federation.round_timeout + LATE_MARGIN_SECONDS)
    start = time.perf_counter()
    with engine_console(False):
        run_simulation(
            server_app=build_server_app(config),
            client_app=build_client_app(out.resolve() / "sites"),
            num_supernodes=n,
            backend_config=backend_config(config),
        )
    return EngineRun("flower", n, time.perf_counter() - start, None, 0)


def _naive_flower_opacus(n: int, size: EngineSize, out: Path) -> EngineRun:
    from flwr.simulation import run_simulation

    from fedsynth.simulation.console import engine_console
    from fedsynth.simulation.engines import backend_config
    from fedsynth.simulation.sites import prepare_sites

    config = bench_config(n, size, out)
    schema, _ = prepare_sites(config, late_seconds=0.0)
    start = time.perf_counter()
    with engine_console(False):
        run_simulation(
            server_app=_naive_server_app(config, schema, size),
            client_app=_naive_client_app(config, out.resolve() / "sites", size),
            num_supernodes=n,
            backend_config=backend_config(config),
        )
    return EngineRun("naive flower+opacus", n, time.perf_counter() - start, None, 0)


_VARIANTS: dict[str, Callable[[int, EngineSize, Path], EngineRun]] = {
    "plain loop": _plain_loop,
    "in-process, 1 worker": _in_process(1),
    "in-process, workers": _in_process(None),
    "flower": _flower,
    "naive flower+opacus": _naive_flower_opacus,
}


# -- the naive assembly ----------------------------------------------------------------------------
def _network(config: RunConfig, schema) -> torch.nn.Module:  # noqa: ANN001 - fedsynth's Schema
    from fedsynth.models.autoencoder import MultimodalAutoencoder

    torch.manual_seed(config.seed)
    return MultimodalAutoencoder(schema, config.model)


def _naive_server_app(config: RunConfig, schema, size: EngineSize):  # noqa: ANN001, ANN202 - flwr types
    from flwr.app import ArrayRecord
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg

    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:  # noqa: ANN001
        n = config.federation.num_hospitals
        strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n)
        strategy.start(
            grid=grid, initial_arrays=ArrayRecord(_network(config, schema).state_dict()), num_rounds=size.rounds
        )

    return app


def _naive_client_app(config: RunConfig, sites: Path, size: EngineSize):  # noqa: ANN202
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    from fedsynth.data.records_file import load_records

    app = ClientApp()

    @app.train()
    def train(msg: Message, context) -> Message:  # noqa: ANN001 - everything rebuilt every round
        torch.set_num_threads(max(1, int(config.simulation.num_cpus)))
        hid = int(context.node_config["partition-id"])
        data = load_records(sites / f"hospital-{hid}" / "data.npz")
        network = _network(config, data.schema)
        network.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        optimizer = torch.optim.Adam(network.parameters(), lr=config.train.lr_autoencoder, betas=(0.9, 0.999))
        tensors = TensorDataset(torch.tensor(data.images), torch.tensor(data.clinical), torch.tensor(data.labels))
        loader = DataLoader(tensors, batch_size=size.batch_size)
        private, optimizer, loader = PrivacyEngine().make_private(
            module=network,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=1.0,  # the noise scale does not change a step's cost
            max_grad_norm=config.privacy.max_grad_norm,
            poisson_sampling=True,
        )
        batches = itertools.chain.from_iterable(itertools.repeat(loader))
        for images, clinical, labels in itertools.islice(batches, size.local_steps):
            if len(labels) == 0:
                continue
            latent = torch.randn(len(labels), network.latent_dim)
            loss = private(images, clinical, labels, latent).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        reply = RecordDict(
            {"arrays": ArrayRecord(network.state_dict()), "metrics": MetricRecord({"num-examples": len(data)})}
        )
        return Message(content=reply, reply_to=msg)

    return app


# -- memory ----------------------------------------------------------------------------------------
def _reset_peak() -> bool:
    from fedsynth.bench.measure import _reset_resident_peak

    return _reset_resident_peak() >= 0


def _peak(reset: bool) -> int | None:
    from fedsynth.bench.measure import _status_bytes

    return _status_bytes("VmHWM") if reset else None


def _peak_of(pid: int) -> int | None:
    """A worker process's resident-set high-water mark (Linux)."""
    from fedsynth.bench.measure import _status_bytes

    return _status_bytes("VmHWM", pid)


def engine_rows(runs: list[EngineRun]) -> list[dict]:
    """One row per (N, variant) with its ratio to the plain loop at that N."""
    plain = {r.hospitals: r.seconds for r in runs if r.variant == "plain loop"}
    rows = []
    for r in runs:
        base = plain.get(r.hospitals)
        rows.append(
            {
                "hospitals": r.hospitals,
                "variant": r.variant,
                "workers": r.workers,
                "seconds": r.seconds,
                "ratio": ratio(r.seconds, base) if base else float("nan"),
                "mb_per_hospital": None if r.peak_bytes is None else r.peak_bytes / r.hospitals / 2**20,
            }
        )
    return rows


def engine_tables(runs: list[EngineRun], size: EngineSize) -> str:
    """The overhead table (every variant against the plain loop, per N) and the scale table (time
    and memory against N for the plain loop and the default in-process engine), as Markdown."""
    rows = engine_rows(runs)
    head = (
        f"### Engines vs one plain loop (cpu; autoencoder phase, {size.rounds} rounds x {size.local_steps} DP-SGD "
        f"steps, {size.records_per_hospital} records and batch {size.batch_size} per hospital, "
        f"image {size.image_size}x{size.image_size})\n\n"
        "| hospitals | variant | workers | wall s | / plain loop |\n|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        workers = "-" if r["variant"] in ("flower", "naive flower+opacus") else str(r["workers"])
        lines.append(f"| {r['hospitals']} | {r['variant']} | {workers} | {r['seconds']:.1f} | {r['ratio']:.2f}x |")
    scale = [
        "\n### Hospitals vs time and memory (cpu)\n",
        "| variant | hospitals | wall s | s per hospital-round | peak MB, all processes | MB per hospital |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        if r.variant not in ("plain loop", "in-process, workers"):
            continue
        mb = "not measured" if r.peak_bytes is None else f"{r.peak_bytes / 2**20:.0f}"
        per = "not measured" if r.peak_bytes is None else f"{r.peak_bytes / 2**20 / r.hospitals:.1f}"
        per_round = r.seconds / (r.hospitals * size.rounds)
        scale.append(f"| {r.variant} | {r.hospitals} | {r.seconds:.1f} | {per_round:.3f} | {mb} | {per} |")
    return "\n".join(lines) + "\n" + "\n".join(scale)
