"""What Flower's simulation engine and Ray may print while fedsynth runs a simulation.

Quiet (the default): fedsynth's own lines are the console (data notes, one line per round, the
privacy label, warnings and errors). Flower's DEBUG and INFO records, its "DEPRECATED FEATURE"
notices and its tracebacks of a hospital's failed ClientApp (the coordinator prints that failure
as one line) are dropped, and Flower's records no longer reach the root logger (Opacus calls
``logging.basicConfig`` when it is imported, and the ``flwr`` logger, at level DEBUG, passed every
record on to that handler: the timestamped DEBUG lines and the doubled warnings). Ray's worker
processes keep their output in Ray's own session logs (``/tmp/ray/session_latest/logs``) instead
of forwarding it to this console, and Python's deprecation warnings (``DeprecationWarning``,
``PendingDeprecationWarning``, ``FutureWarning``) are not shown. Flower's and Ray's other warnings
and errors still are.

Verbose: Flower's logging as Flower sets it up (DEBUG lines with timestamps), Ray's driver at INFO,
every worker's output forwarded without Ray's de-duplication, every warning shown.

The settings are process-wide (the ``flwr`` logger, Python's warning filters, one environment
variable), so :func:`engine_console` applies them for the engine's run only and restores them
afterwards.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

#: The logger every Flower module logs to.
FLOWER_LOGGER = "flwr"

#: How Flower begins the text of a deprecation notice (``flwr.supercore.logger.warn_deprecated_feature``).
FLOWER_DEPRECATION = "DEPRECATED FEATURE"

#: Python warning categories that announce deprecations.
DEPRECATION_WARNINGS: tuple[type[Warning], ...] = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


#: Where Flower's engine reports a ClientApp that raised, as (module, function): the exception
#: and its remote traceback, tens of lines per failure. The failure also comes back as the
#: hospital's error reply, which the coordinator prints as one line (round, hospital, exception
#: type and message); ``--verbose`` shows the traceback.
FLOWER_CLIENT_FAILURE_REPORTS = frozenset({("raybackend", "process_message"), ("vce_api", "worker")})


class FlowerNoise(logging.Filter):
    """Drops Flower's DEBUG/INFO records, its deprecation notices and its tracebacks of a failed
    ClientApp (reported once, in one line, by the coordinator); keeps every other warning and error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        if (record.module, record.funcName) in FLOWER_CLIENT_FAILURE_REPORTS:
            return False
        return not str(record.msg).lstrip().startswith(FLOWER_DEPRECATION)


def ray_init_args(verbose: bool) -> dict[str, int | bool]:
    """``ray.init`` arguments: Ray's driver logging level, and whether workers' output is forwarded."""
    return {"logging_level": logging.INFO if verbose else logging.WARNING, "log_to_driver": verbose}


@contextmanager
def engine_console(verbose: bool) -> Iterator[None]:
    """Run the body (Flower's engine) with a quiet console, or with everything when ``verbose``."""
    if verbose:
        with _environment("RAY_DEDUP_LOGS", "0"):  # every hospital's lines, not one per kind
            yield
        return
    logger = logging.getLogger(FLOWER_LOGGER)
    noise = FlowerNoise()
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.WARNING)  # child loggers (level NOTSET) inherit it
    logger.propagate = False
    logger.addFilter(noise)
    try:
        with warnings.catch_warnings():
            for category in DEPRECATION_WARNINGS:
                warnings.simplefilter("ignore", category)
            yield
    finally:
        logger.removeFilter(noise)
        logger.setLevel(level)
        logger.propagate = propagate


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """``name=value`` in the environment for the body, unless the user already set ``name``."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
