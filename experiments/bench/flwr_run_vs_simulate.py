"""Wall time of `flwr run .` (the documented, supported way: docs/scaling.md) against
`fedsynth simulate --engine flower`, on the same configuration and the same resources, side by side
in one run of this script.

Why: both run the same sites, ServerApp, ClientApp and strategy on Flower's simulation engine (Ray,
one CPU per hospital), but `flwr run .` adds Flower's own runtime around them (a local SuperLink,
its SuperExec, a `flwr-simulation` process per run, the app bundled and streamed back). This
measures what that costs on this machine, as real processes, with exactly the commands
tests/test_flwr_run.py runs: `fedsynth prepare`, `flwr federation simulation-config`, `flwr run .
--stream` in this environment (FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1), with the SuperLink's
own FLWR_HOME and free ports, so it never meets another session's SuperLink.

Usage: .venv/bin/python experiments/bench/flwr_run_vs_simulate.py [--hospitals 2] [--repeats 1]
                                                                   [--keep] [--set KEY=VALUE ...]
Prints a Markdown table (wall seconds and the ratio to `fedsynth simulate`) and the machine's facts.
With --repeats N the variants take turns (simulate, flwr run, simulate, ...) and medians are shown.
At the end the local SuperLink this script started is stopped (SIGTERM) and every process it
started (found by a unique tag in the environment, as tests/processes.py does) is checked gone.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The variable holding this run's tag; every process started here inherits it.
TAG_VARIABLE = "FEDSYNTH_BENCH_PROCESS_TAG"
#: Flower's long-lived processes: the local SuperLink and the SuperExec it starts.
SUPERLINK = ("flower-superlink", "flower-superexec")
#: tests/conftest.py TINY grown to a small but real run: the GAN schedule (the default), 4 autoencoder
#: and 3 GAN rounds of 200 / 100 local DP steps, 2,000 phantom records, the default model sizes; about
#: a minute per variant on 2 busy cores. --hospitals and simulation.num_cpus=1 are added to these.
BASE_SETTINGS = [
    "data.phantom_records=2000",
    "train.rounds_autoencoder=4",
    "train.rounds_gan=3",
    "train.local_steps_autoencoder=200",
    "train.local_steps_gan=100",
    "train.generator_steps_per_round=20",
    "train.batch_size=16",
    "evaluation.num_synthetic=500",
    "evaluation.centralized_baseline=false",
    "privacy.sample_rate=0.05",
    'simulation.device="cpu"',
]
#: Seconds any one command may take before the benchmark gives up.
COMMAND_TIMEOUT = 1800.0


@dataclass
class Timings:
    """Wall seconds per measured step, one entry per repeat."""

    steps: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, step: str, seconds: float) -> None:
        self.steps.setdefault(step, []).append(seconds)

    def median(self, step: str) -> float:
        return statistics.median(self.steps[step])


def settings(hospitals: int, extra: list[str]) -> list[str]:
    """The run's settings as KEY=VALUE, later keys replacing earlier ones."""
    items = dict(s.split("=", 1) for s in [*BASE_SETTINGS, f"federation.num_hospitals={hospitals}",
                                           "simulation.num_cpus=1", *extra])  # fmt: skip
    return [f"{k}={v}" for k, v in items.items()]


def set_args(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def run_config(items: list[str], out: Path) -> str:
    """`flwr run --run-config`: the same settings and the run folder."""
    return " ".join([*items, f'out_dir="{out}"'])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flower_env(work: Path, sites: Path, tag: str) -> dict[str, str]:
    """The documented environment (docs/scaling.md), with this run's FLWR_HOME, ports and tag."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_HOME": str(work / "flwr-home"),
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()),
        "FLWR_LOCAL_CONTROL_API_PORT": str(free_port()),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FEDSYNTH_SITES_DIR": str(sites),
        TAG_VARIABLE: tag,
    }


def tagged(tag: str) -> dict[int, str]:
    """``{pid: command line}`` of the live, non-zombie processes whose environment holds ``tag``."""
    marker = f"{TAG_VARIABLE}={tag}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def runtime(tag: str) -> dict[int, str]:
    """Processes of a run (Ray, flwr-simulation, the fedsynth CLI), not the SuperLink's own two."""
    return {pid: cmd for pid, cmd in tagged(tag).items() if not any(name in cmd for name in SUPERLINK)}


def wait_for(probe: Callable[[], dict[int, str]], patience: float = 60.0) -> dict[int, str]:
    """Poll ``probe()`` until it finds no process or ``patience`` runs out; returns what is left."""
    deadline = time.monotonic() + patience
    left = probe()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = probe()
    return left


def timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    """Run ``cmd`` from the repository root, its output into ``log``; wall seconds. Fails loudly."""
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {done.returncode}; its output: {log}\n{tail}")
    return seconds


def quiet_between(tag: str, timings: Timings, after: str) -> None:
    """Wait for a variant's processes to exit so the next variant has the cores; note stragglers."""
    left = wait_for(lambda: runtime(tag))
    if left:
        timings.notes.append(f"after {after}: {len(left)} process(es) still alive after 60 s: {sorted(left)}")


def bench_simulate(work: Path, items: list[str], env: dict[str, str], i: int, timings: Timings) -> None:
    """(a) the whole `fedsynth simulate --engine flower` command, in a new run folder."""
    out = work / f"simulate-{i}"
    env = {k: v for k, v in env.items() if k != "FEDSYNTH_SITES_DIR"}  # it binds its own sites
    cmd = ["fedsynth", "simulate", "--engine", "flower", "--out", str(out), *set_args(items)]
    timings.add("simulate", timed(cmd, env, work / f"simulate-{i}.log"))
    if not (out / "summary.json").exists():
        raise RuntimeError(f"fedsynth simulate wrote no {out}/summary.json")
    quiet_between(env[TAG_VARIABLE], timings, f"simulate #{i}")


def bench_flwr_run(work: Path, run: Path, items: list[str], env: dict[str, str], i: int, timings: Timings) -> None:
    """(b) `fedsynth prepare`, `flwr run . --stream`, `fedsynth audit`: each timed, the same run
    folder (the SuperLink's FEDSYNTH_SITES_DIR) written afresh for every repeat."""
    shutil.rmtree(run, ignore_errors=True)
    timings.add("prepare", timed(["fedsynth", "prepare", "--out", str(run), *set_args(items)], env,
                                 work / f"prepare-{i}.log"))  # fmt: skip
    log = work / f"flwr-run-{i}.log"
    started = time.time()
    timings.add("flwr run", timed(["flwr", "run", ".", "--stream", "--run-config", run_config(items, run)], env, log))
    summary = run / "summary.json"
    if not summary.exists():  # `flwr run` exits 0 even when the ServerApp failed
        raise RuntimeError(f"flwr run wrote no {summary}; its output: {log}\n{log.read_text()[-3000:]}")
    timings.add("flwr summary", summary.stat().st_mtime - started)
    check_flower_log(log.read_text(), int(dict(s.split("=", 1) for s in items)["federation.num_hospitals"]), timings)
    timings.add("audit", timed(["fedsynth", "audit", str(run)], env, work / f"audit-{i}.log"))
    quiet_between(env[TAG_VARIABLE], timings, f"flwr run #{i}")


def check_flower_log(log: str, hospitals: int, timings: Timings) -> None:
    """Note where Flower's own log does not show this environment and one CPU per hospital."""
    if "Installing application dependencies" in log or "Created env for run" in log:
        timings.notes.append("flwr run installed a runtime environment (not this environment)")
    if "'client_resources': {'num_cpus': 1" not in log:
        timings.notes.append("flwr run's log does not show client_resources num_cpus 1")
    pool = re.search(r"Constructed ActorPool with: (\d+) actors", log)
    actors = int(pool.group(1)) if pool else None
    expected = min(hospitals, len(os.sched_getaffinity(0)))
    if actors != expected:
        timings.notes.append(f"flwr run's ActorPool: {actors} actors (expected {expected})")


def start_superlink(env: dict[str, str], hospitals: int, work: Path, timings: Timings) -> None:
    """The first `flwr` command starts the local SuperLink; the same command again (SuperLink up)
    times the command alone, so their difference is the SuperLink's start-up."""
    cmd = ["flwr", "federation", "simulation-config", "@none/default", "local", "--num-supernodes", str(hospitals),
           "--client-resources-num-cpus", "1"]  # fmt: skip
    timings.add("superlink first", timed(cmd, env, work / "simulation-config-1.log"))
    if not any("flower-superlink" in cmd for cmd in tagged(env[TAG_VARIABLE]).values()):
        raise RuntimeError("`flwr federation simulation-config` started no local SuperLink")
    timings.add("superlink again", timed(cmd, env, work / "simulation-config-2.log"))


def stop_superlink(tag: str) -> dict[int, str]:
    """SIGTERM the SuperLink started here (it ends its SuperExec), wait, SIGKILL any straggler;
    returns what was alive 30 s after the SIGTERM (empty when everything stopped by itself)."""
    for pid, cmd in tagged(tag).items():
        if "flower-superlink" in cmd:
            os.kill(pid, signal.SIGTERM)
    left = wait_for(lambda: tagged(tag), patience=30.0)
    for pid in tagged(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def cell(timings: Timings, step: str) -> str:
    """Median seconds, with every repeat's value when there are several."""
    values = timings.steps[step]
    text = f"{statistics.median(values):.1f}"
    return text if len(values) == 1 else f"{text} ({', '.join(f'{v:.1f}' for v in values)})"


def table(timings: Timings) -> str:
    base = timings.median("simulate")
    equal = [p + r + a for p, r, a in zip(timings.steps["prepare"], timings.steps["flwr run"], timings.steps["audit"])]
    timings.steps["flwr total"] = equal
    first, again = timings.median("superlink first"), timings.median("superlink again")
    rows = [
        ("`fedsynth simulate --engine flower`", "whole command: CLI start, data check, sites written, Ray "
         "started, training, evaluation, audit (TSTR)", cell(timings, "simulate"), base),
        ("`flwr run . --stream`", "from `flwr run` start until the stream returns: bundle, submit, "
         "flwr-simulation + Ray started, training, evaluation, summary.json", cell(timings, "flwr run"),
         timings.median("flwr run")),
        ("`flwr run` until summary.json", "from `flwr run` start until the ServerApp wrote summary.json "
         "(its mtime)", cell(timings, "flwr summary"), timings.median("flwr summary")),
        ("`fedsynth prepare`", "sites written (data check, records, site.toml)", cell(timings, "prepare"),
         timings.median("prepare")),
        ("`fedsynth audit`", "TSTR on the real records (simulate does this itself)", cell(timings, "audit"),
         timings.median("audit")),
        ("prepare + flwr run + audit", "the same work as `fedsynth simulate`, the documented way",
         cell(timings, "flwr total"), timings.median("flwr total")),
        ("one-time: local SuperLink start-up", f"first `flwr federation simulation-config` ({first:.1f} s, "
         f"starts the SuperLink) minus the same command again ({again:.1f} s)", f"{first - again:.1f}",
         first - again),
    ]  # fmt: skip
    lines = ["| variant | what the time includes | wall s | ratio to simulate |", "|---|---|---|---|"]
    lines += [f"| {name} | {what} | {text} | {value / base:.2f}x |" for name, what, text, value in rows]
    return "\n".join(lines)


def facts(before: str, after: str, repeats: int) -> str:
    return "\n".join([
        f"- machine: {platform.machine()}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), "
        f"{platform.system()} {platform.release()}",
        f"- load average (1 / 5 / 15 min): before {before}; after {after}",
        f"- python {platform.python_version()}, flwr {package_version('flwr')}, ray {package_version('ray')}, "
        f"torch {package_version('torch')}, opacus {package_version('opacus')}",
        f"- repeats: {repeats} (variants in turns: simulate, then prepare/flwr run/audit); medians shown",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hospitals", type=int, default=2, help="simulated hospitals (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each variant, in turns (default 1)")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="another KEY=VALUE setting")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (run folders, logs)")
    args = parser.parse_args()

    items = settings(args.hospitals, args.extra)
    work = Path(tempfile.mkdtemp(prefix="flwr-vs-simulate-"))
    tag = uuid.uuid4().hex
    env = flower_env(work, work / "flwr" / "sites", tag)
    timings = Timings()
    before = load()
    print(f"work folder: {work}\nsettings: {' '.join(items)}", flush=True)
    failed = True
    try:
        start_superlink(env, args.hospitals, work, timings)
        for i in range(args.repeats):
            print(f"repeat {i + 1}/{args.repeats}: fedsynth simulate ...", flush=True)
            bench_simulate(work, items, env, i, timings)
            print(f"repeat {i + 1}/{args.repeats}: fedsynth prepare, flwr run, fedsynth audit ...", flush=True)
            bench_flwr_run(work, work / "flwr", items, env, i, timings)
        failed = False
    finally:
        left = stop_superlink(tag)
        gone = not wait_for(lambda: tagged(tag), patience=10.0)
        if failed or args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    after = load()
    print()
    print(table(timings))
    print()
    print(facts(before, after, args.repeats))
    print(f"- SuperLink stopped: {'every started process exited by itself' if not left else f'SIGKILLed {left}'}; "
          f"processes left now: {'none' if gone else 'some (see /proc)'}")  # fmt: skip
    for note in timings.notes:
        print(f"- note: {note}")


if __name__ == "__main__":
    main()
