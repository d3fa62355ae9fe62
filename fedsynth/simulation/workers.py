"""Resident parallel workers for the in-process engine.

The in-process engine used to serve every hospital one after another in the server's own process.
Here the hospitals are spread over ``W`` resident workers instead (one per CPU core, or one per
visible GPU): worker 0 is the server's own process, workers 1 .. W-1 are worker processes, each
holding its hospitals' :class:`~fedsynth.hospital.service.HospitalService`
(records, models, optimizers, DP engines) for the whole run. A round is one message per worker
(every instruction for its hospitals) and one answer per worker (every reply): the workers train
their hospitals at the same time and the server reduces once per round, as in a resident-worker
simulator.

What crosses a process boundary is exactly the wire content of :mod:`fedsynth.federation.wire`
(the bytes the Flower engine would carry, counted the same way), so a hospital behind a worker sees
and answers the same messages as behind Flower. Each worker sets its own torch thread count
(``cores / W`` by default): a hospital's small steps run fastest on one thread, and two processes
each asking for every core only fight over them.

A worker process that has not answered a wave within ``federation.round_timeout`` fails its
hospitals for that wave, as Flower's engine fails late nodes; its late answer is read and discarded
before its next one. Worker 0 trains in the server's process, so nothing cuts its hospitals short.

On a machine with GPUs each worker is pinned to one device (``CUDA_VISIBLE_DEVICES`` is set before
the worker imports torch), so the hospitals of worker ``w`` train on GPU ``w`` and ``simulation.device
= "auto"`` in their site files resolves to it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from fedsynth.config.schema import SimulationConfig
from fedsynth.errors import FedsynthError
from fedsynth.federation import wire
from fedsynth.federation.strategy import Send
from fedsynth.federation.transport import Exchange
from fedsynth.site.config import Site

if TYPE_CHECKING:
    from fedsynth.hospital.service import HospitalService

#: Worker answers: a reply's wire content, or why the hospital did not answer (a simulated fault).
_OK, _FAILED = "ok", "failed"

log = logging.getLogger(__name__)


class _Late(Exception):
    """A worker process had not answered by the request's deadline."""


def available_cores() -> int:
    """CPU cores this process may run on (its affinity set, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus() -> int:
    """How many CUDA devices torch sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass(frozen=True)
class WorkerPlan:
    """How hospitals are spread: ``assignment[h]`` is hospital h's worker; worker w uses
    ``threads`` torch threads and, when ``gpus[w]`` is not None, only that GPU."""

    assignment: dict[int, int]
    threads: int
    gpus: tuple[int | None, ...]

    @property
    def workers(self) -> int:
        return len(self.gpus)

    def hospitals_of(self, worker: int) -> list[int]:
        return sorted(h for h, w in self.assignment.items() if w == worker)

    def describe(self) -> str:
        where = ", ".join(
            f"worker {w}{' (this process)' if w == 0 else ''}: hospitals {self.hospitals_of(w)}"
            + ("" if g is None else f" on GPU {g}")
            for w, g in enumerate(self.gpus)
        )
        return f"{self.workers} resident worker(s), {self.threads} torch thread(s) each ({where})"


def plan_workers(
    simulation: SimulationConfig, hospitals: list[int], cores: int | None = None, gpus: int | None = None
) -> WorkerPlan:
    """Spread ``hospitals`` over workers (round-robin, so equal shares differ by at most one).

    ``simulation.workers`` = 0 (auto): one worker per visible GPU when the sites train on GPU
    (``simulation.device`` "auto" or "cuda"), otherwise one per core, never more than hospitals.
    ``simulation.threads`` = 0 (auto): the cores shared out between the workers (at least 1)."""
    cores = available_cores() if cores is None else cores
    wants_gpu = simulation.device in ("auto", "cuda")
    gpus = (visible_gpus() if wants_gpu else 0) if gpus is None else gpus
    count = simulation.workers or (gpus if gpus > 0 else cores)
    count = max(1, min(count, len(hospitals)))
    threads = simulation.threads or max(1, cores // count)
    devices = tuple(w % gpus if gpus > 0 else None for w in range(count))
    return WorkerPlan({h: i % count for i, h in enumerate(sorted(hospitals))}, threads, devices)


def _answer(service: HospitalService, content: dict) -> tuple[str, object]:
    """One hospital's answer to one instruction's wire content: its reply's wire content, or why it
    did not answer (a simulated fault), as a worker sends it back."""
    from fedsynth.site.faults import HospitalLate, HospitalUnavailable

    instruction = wire.content_to_instruction(content)
    try:
        reply = service.handle(instruction)
    except (HospitalUnavailable, HospitalLate) as e:
        return _FAILED, str(e)
    return _OK, wire.reply_to_content(reply, instruction)


def _ledger_contents(services: dict[int, HospitalService], hospitals: list[int]) -> dict[int, dict]:
    """The ledger reports of ``hospitals`` as wire content (an unavailable hospital is left out)."""
    from fedsynth.site.faults import HospitalUnavailable

    reports = {}
    for hid in hospitals:
        try:
            reports[hid] = wire.ledger_to_content(hid, services[hid].ledger_report())
        except HospitalUnavailable:
            continue
    return reports


def _serve(connection: Connection, site_files: dict[int, str], threads: int) -> None:
    """A worker's loop: build its hospitals once, then answer the server's requests until told to
    stop. Runs in a fresh interpreter: torch is imported here, after ``CUDA_VISIBLE_DEVICES``."""
    import torch

    from fedsynth.hospital.service import HospitalService
    from fedsynth.site.config import load_site

    torch.set_num_threads(threads)
    services = {hid: HospitalService(load_site(Path(path))) for hid, path in site_files.items()}
    while True:
        request = connection.recv()
        kind = request[0]
        if kind == "stop":
            connection.close()
            return
        try:
            if kind == "exchange":
                answers = [(hid, *_answer(services[hid], content)) for hid, content in request[1]]
                connection.send(("answers", answers))
            elif kind == "ledgers":
                connection.send(("ledgers", _ledger_contents(services, request[1])))
            else:
                connection.send(("error", f"unknown request {kind!r}"))
        except Exception:  # the server must learn what broke, with the worker's traceback
            connection.send(("error", traceback.format_exc()))


class WorkerPoolTransport:
    """A transport to hospitals resident in ``W`` workers (see the module docstring): worker 0 is
    this process, workers 1 .. W-1 are resident worker processes.

    Worker 0's hospitals are served here while the other workers train theirs, so ``W`` workers
    cost ``W - 1`` extra interpreters, and the others start (importing torch, building their
    hospitals) while this process builds its own share. Use as a context manager (or call
    :meth:`close`): the workers live until the run ends."""

    def __init__(self, sites: dict[int, Site], plan: WorkerPlan) -> None:
        from fedsynth.hospital.service import HospitalService

        self.plan = plan
        self._hospitals = sorted(sites)
        self._connections: dict[int, Connection] = {}
        self._processes: dict[int, subprocess.Popen] = {}
        #: Per worker, answers still to come to requests it was too late for (read and discarded).
        self._late: dict[int, int] = {}
        # Workers are fresh interpreters (``python -m fedsynth.simulation.workers``), not forks of
        # this process (no forked torch/OpenMP state) and not multiprocessing's spawn (which re-runs
        # the caller's main script); each talks to the server over its own socket pair, whose other
        # end no other process holds.
        try:
            for worker, gpu in enumerate(plan.gpus):
                if worker == 0:
                    continue
                files = {h: str(sites[h].file) for h in plan.hospitals_of(worker)}
                env = dict(os.environ)
                if gpu is not None:
                    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
                    env["CUDA_VISIBLE_DEVICES"] = visible.split(",")[gpu] if visible else str(gpu)
                ours, theirs = socket.socketpair()
                with theirs:
                    command = [
                        sys.executable,
                        "-m",
                        __name__,
                        str(theirs.fileno()),
                        str(plan.threads),
                        json.dumps(files),
                    ]
                    self._processes[worker] = subprocess.Popen(command, env=env, pass_fds=[theirs.fileno()])
                self._connections[worker] = Connection(ours.detach())
            # Worker 0's share, built while the others start.
            self._local = {h: HospitalService(sites[h]) for h in plan.hospitals_of(0)}
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> WorkerPoolTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def hospitals(self) -> list[int]:
        return list(self._hospitals)

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (workers 1 .. W-1; worker 0 is this process)."""
        return [self._processes[w].pid for w in sorted(self._processes)]

    def exchange(self, sends: list[Send], timeout: float) -> Exchange:
        """Deliver ``sends``; a worker process that has not answered ``timeout`` seconds after the
        wave was sent fails its hospitals for this wave, as Flower's engine fails late nodes (its
        answer, when it comes, is discarded). Worker 0's hospitals train in this process and are
        never cut short."""
        deadline = time.monotonic() + timeout
        out = Exchange()
        batches: dict[int, list] = {}
        for send in sends:
            content = wire.instruction_to_content(send.instruction)
            out.bytes_down[send.hospital_id] = wire.content_nbytes(content)
            batches.setdefault(self.plan.assignment[send.hospital_id], []).append((send.hospital_id, content))
        answers: dict[int, tuple[str, object]] = {}

        def serve_local() -> None:
            answers.update({hid: _answer(self._local[hid], content) for hid, content in batches.get(0, [])})

        remote = {w: ("exchange", batch) for w, batch in batches.items() if w != 0}
        answered = self._round_trip(remote, "answers", deadline, serve_local)
        for worker in remote:
            if worker in answered:
                answers.update({hid: (status, payload) for hid, status, payload in answered[worker]})
            else:
                late = f"no reply within {timeout:.0f} s (worker {worker} still busy)"
                answers.update({hid: (_FAILED, late) for hid, _ in batches[worker]})
        for send in sends:  # replies in the order the strategy sent them, as the serial engine gives
            status, payload = answers[send.hospital_id]
            if status == _FAILED:
                out.failures[send.hospital_id] = payload
                continue
            out.bytes_up[send.hospital_id] = wire.content_nbytes(payload)
            out.replies.append(wire.content_to_reply(payload))
        return out

    def ledgers(self, hospitals: list[int], timeout: float) -> dict[int, dict]:
        """The hospitals' ledger reports; those of a worker process that has not answered within
        ``timeout`` seconds are left out, as for any unreachable hospital."""
        deadline = time.monotonic() + timeout
        asked: dict[int, list[int]] = {}
        for hid in hospitals:
            asked.setdefault(self.plan.assignment[hid], []).append(hid)
        contents: list[dict] = []

        def report_local() -> None:
            contents.extend(_ledger_contents(self._local, asked.get(0, [])).values())

        remote = {w: ("ledgers", hids) for w, hids in asked.items() if w != 0}
        for reports in self._round_trip(remote, "ledgers", deadline, report_local).values():
            contents.extend(reports.values())
        out = {}
        for content in contents:
            hid, report = wire.content_to_ledger(content)
            out[hid] = report
        return dict(sorted(out.items()))

    def _round_trip(
        self, requests: dict[int, tuple], expected: str, deadline: float, local: Callable[[], None]
    ) -> dict[int, object]:
        """Send each worker process its request, do worker 0's share (``local``) meanwhile, and
        return the answers that came by ``deadline`` (a ``time.monotonic()`` value), by worker.

        A worker still busy with a request it was too late for gets its new request only once that
        late answer is read (and discarded): a request is never written while the worker may be
        writing a large answer nobody reads, which would block both ends."""
        sent, busy = [], []
        for worker, request in requests.items():  # every free worker starts before worker 0's share
            if self._drain(worker, time.monotonic()):
                self._send(worker, request)
                sent.append(worker)
            else:
                busy.append(worker)
        local()
        for worker in busy:
            if self._drain(worker, deadline):
                self._send(worker, requests[worker])
                sent.append(worker)
        answers = {}
        for worker in sent:
            try:
                answers[worker] = self._receive(worker, expected, deadline)
            except _Late:
                self._late[worker] = self._late.get(worker, 0) + 1
        return answers

    def _drain(self, worker: int, deadline: float) -> bool:
        """Read and discard ``worker``'s answers to requests it was too late for; whether it has
        none left by ``deadline``."""
        while self._late.get(worker):
            try:
                kind, payload = self._receive(worker, None, deadline)
            except _Late:
                return False
            self._late[worker] -= 1
            if kind == "error":  # its hospitals were already counted as not answering
                log.warning("worker %d failed on a wave it answered too late for:\n%s", worker, payload)
        return True

    def _send(self, worker: int, request: tuple) -> None:
        try:
            self._connections[worker].send(request)
        except OSError as e:
            raise self._died(worker) from e

    def _receive(self, worker: int, expected: str | None, deadline: float):  # noqa: ANN202 - the payload's type depends on the request
        """``worker``'s next answer of kind ``expected`` (None: any kind, returned with its kind);
        raises :class:`_Late` when none has come by ``deadline``."""
        connection = self._connections[worker]
        try:
            # A worker that died is readable (end of file), so it is reported, not waited for.
            if not connection.poll(max(0.0, deadline - time.monotonic())):
                raise _Late
            kind, payload = connection.recv()
        except (EOFError, OSError) as e:
            raise self._died(worker) from e
        if expected is None:
            return kind, payload
        if kind != expected:
            raise FedsynthError(f"worker {worker} (hospitals {self.plan.hospitals_of(worker)}) failed:\n{payload}")
        return payload

    def _died(self, worker: int) -> FedsynthError:
        try:
            code = self._processes[worker].wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        return FedsynthError(f"worker {worker} (hospitals {self.plan.hospitals_of(worker)}) died (exit code {code})")

    def close(self) -> None:
        """Stop every worker (politely, then by force)."""
        for connection in self._connections.values():
            try:
                connection.send(("stop",))
            except (OSError, ValueError):
                pass
        for process in self._processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for connection in self._connections.values():
            connection.close()
        self._connections, self._processes = {}, {}


def main(argv: list[str]) -> None:
    """Worker entry point: ``python -m fedsynth.simulation.workers FD THREADS SITE_FILES_JSON``, FD
    being the worker's end of its socket pair with the server."""
    fd, threads, files = argv
    connection = Connection(int(fd))
    _serve(connection, {int(h): path for h, path in json.loads(files).items()}, int(threads))


if __name__ == "__main__":
    main(sys.argv[1:])
