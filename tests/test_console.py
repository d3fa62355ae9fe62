"""A quiet, informative console: Flower's and Ray's own chatter only with --verbose, and a hospital's
failure recorded as one plain line."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

from conftest import TINY

from fedsynth.federation.failures import MAX_REASON_CHARS, plain_reason, strip_ansi
from fedsynth.simulation.console import engine_console, ray_init_args

#: The reason Flower 1.41's Ray engine gave for hospital 1's simulated crash (faults.crash="1@2"),
#: as a real run recorded it before reasons were normalised (paths shortened).
RAY_REASON = (
    "error reply: <class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'\x1b[36mray::ClientAppActor.run()"
    "\x1b[39m (pid=12562, ip=192.0.2.2, actor_id=8def4a8676983b0e74d6af6701000000, "
    "repr=<flwr.simulation.ray_transport.ray_actor.ClientAppActor object at 0x7fa9691f8d90>)\n"
    "                  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    '  File "/venv/flwr/clientapp/client_app.py", line 161, in __call__\n'
    "    return self._registered_funcs[full_name](message, context)\n"
    "           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    '  File "/work/main/fedsynth/flower/client.py", line 67, in train\n'
    "    reply = service.handle(wire.content_to_instruction(msg.content))\n"
    '  File "/work/main/fedsynth/hospital/service.py", line 105, in handle\n'
    "    raise HospitalUnavailable(\n"
    "fedsynth.site.faults.HospitalUnavailable: hospital 1 is unavailable in round 2 (crash)\n\n"
    "The above exception was the direct cause of the following exception:\n\n"
    "\x1b[36mray::ClientAppActor.run()\x1b[39m (pid=12562, ip=192.0.2.2, actor_id=8def4a8676983b0e74d6af6701000000)\n"
    '  File "/venv/flwr/simulation/ray_transport/ray_actor.py", line 65, in run\n'
    "    raise ClientAppException(str(ex)) from ex\n"
    "flwr.clientapp.client_app.ClientAppException: \n"
    "Exception ClientAppException occurred. Message: hospital 1 is unavailable in round 2 (crash)'>"
)


def test_a_ray_traceback_becomes_one_plain_line() -> None:
    assert plain_reason(RAY_REASON) == "error reply: HospitalUnavailable: hospital 1 is unavailable in round 2 (crash)"


def test_plain_reasons_stay_as_they_are_and_long_ones_are_capped() -> None:
    for plain in ("hospital 1 is unavailable in round 2 (crash)", "no reply within 600 s"):
        assert plain_reason(plain) == plain
    assert plain_reason("ValueError: bad shape\nmore detail\n") == "ValueError: bad shape"
    assert plain_reason("\x1b[31mred\x1b[0m   text") == "red text"
    assert plain_reason("") == "no reason given"
    long = plain_reason("x" * 1000)
    assert len(long) == MAX_REASON_CHARS and long.endswith("...")


def test_a_plain_python_traceback_keeps_the_root_cause_with_a_message_on_the_next_line() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "a.py", line 1, in <module>\n'
        "    f()\n"
        "mod.WrapperError: \n"
        "the disk is full\n"
        "and a second line"
    )
    assert plain_reason(text) == "WrapperError: the disk is full"
    assert strip_ansi("\x1b[1;36mok\x1b[0m\x1b[2K") == "ok"


def test_engine_console_drops_flower_noise_and_restores_the_logger() -> None:
    from flwr.supercore.logger import FLOWER_LOGGER as logger  # set up as in a run: level DEBUG

    assert logger.level == logging.DEBUG
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    keep = Keep(level=logging.DEBUG)
    logger.addHandler(keep)
    before = (logger.level, logger.propagate, list(logger.filters))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with engine_console(verbose=False):
                logger.debug("debug line")
                logger.info("info line")
                logger.warning("DEPRECATED FEATURE: %s\n\n  removed later", "run_simulation")
                logger.warning("a real warning")
                logging.getLogger("flwr.child").info("child info")
                for module, func in (("vce_api", "worker"), ("vce_api", "other")):  # a failed ClientApp's report
                    report = logging.LogRecord("flwr", logging.ERROR, f"/x/{module}.py", 1, func, None, None, func)
                    logger.handle(report)
                warnings.warn("old API", DeprecationWarning, stacklevel=1)
                warnings.warn("Tip: In future versions of Ray", FutureWarning, stacklevel=1)
                warnings.warn("kept", UserWarning, stacklevel=1)
            with engine_console(verbose=True):
                logger.debug("verbose debug")
        assert seen == ["a real warning", "other", "verbose debug"]
        assert [str(w.message) for w in caught] == ["kept"]
        assert (logger.level, logger.propagate, list(logger.filters)) == before
    finally:
        logger.removeHandler(keep)
    assert ray_init_args(False) == {"logging_level": logging.WARNING, "log_to_driver": False}
    assert ray_init_args(True)["log_to_driver"] is True


def _simulate(out: Path, *extra: str) -> str:
    """``fedsynth simulate`` of the TINY run with 2 hospitals through Flower's engine, in a fresh
    process; its stdout and stderr together."""
    sets = [arg for setting in [*TINY, "federation.num_hospitals=2"] for arg in ("--set", setting)]
    command = [sys.executable, "-m", "fedsynth.cli.main", "simulate", *sets, "--out", str(out), *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("FLWR_LOG_LEVEL", "RAY_DEDUP_LOGS", "PYTHONWARNINGS")}
    env["COLUMNS"] = "200"
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def _round_lines(output: str) -> list[str]:
    return re.findall(r"^round +\d+ \[(?:autoencoder|gan)\] accepted \d.*$", output, flags=re.MULTILINE)


def test_simulate_prints_fedsynth_lines_and_flower_only_with_verbose(tmp_path: Path) -> None:
    """Hospital 1 crashes in round 2 of both runs. Quiet: fedsynth's round lines and the failure
    in one line, nothing of Flower's DEBUG/INFO, deprecations, tracebacks or Ray's workers.
    Verbose: Flower's DEBUG lines and the traceback are there. Either way metrics.jsonl records the
    crash (a Ray traceback on the wire) as one plain line."""
    crash = ("--set", 'faults.crash="1@2"')
    one_line = "error reply: HospitalUnavailable: hospital 1 is unavailable in round 2 (crash)"
    quiet = _simulate(tmp_path / "quiet", *crash)
    assert len(_round_lines(quiet)) == 3, quiet
    assert "run folder:" in quiet and f"hospital 1 failed: {one_line}" in quiet
    debug = [line for line in strip_ansi(quiet).splitlines() if "DEBUG" in line]
    assert not debug, "\n".join(debug)
    for noise in ("DeprecationWarning", "DEPRECATED FEATURE", "FutureWarning", "(ClientAppActor pid=", "Traceback"):
        assert noise not in quiet, f"{noise!r} in the quiet console:\n{quiet}"

    verbose = strip_ansi(_simulate(tmp_path / "verbose", "--verbose", *crash))
    assert len(_round_lines(verbose)) == 3, verbose
    assert any(re.match(r"^DEBUG\b", line) for line in verbose.splitlines()), verbose[-4000:]
    assert "DEPRECATED FEATURE" in verbose and "Traceback" in verbose
    for run in ("quiet", "verbose"):
        rounds = [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        assert next(r for r in rounds if r["kind"] == "server" and r["round"] == 2)["failed"] == {"1": one_line}
