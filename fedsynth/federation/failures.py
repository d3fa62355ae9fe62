"""Why a hospital failed, as one plain line.

A transport says why a hospital did not answer in its own words: the in-process engine passes the
hospital's exception message, Flower's engine the error reply's reason, which under Ray is a
whole remote traceback with terminal colour codes (``ray::ClientAppActor.run()`` in cyan, then
the actor's stack, the chained cause, and Flower's wrapping ``ClientAppException``). The
coordinator records every reason through :func:`plain_reason`, so ``metrics.jsonl``, the console
and the checkpoint hold one line a person can read: the transport's own prefix, the exception type
that started it and the first line of its message.
"""

from __future__ import annotations

import re

#: Longest reason kept (characters); longer ones end with "...".
MAX_REASON_CHARS = 240

#: Terminal escape sequences (colours, cursor movement): CSI ... final byte, or a lone ESC + char.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")

#: A frame line of a Python traceback.
_FRAME = re.compile(r'^\s+File ".*", line \d+')

#: The line that ends a traceback: ``package.module.TypeName: message`` (unindented), where the type
#: may carry Ray's ``(CauseType)`` suffix.
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:\([\w.]+\))?):(?:\s(?P<message>.*))?$")

#: A short label a transport puts in front of the reason (``error reply: ``).
_PREFIX = re.compile(r"^(?P<prefix>[A-Za-z][\w -]*: )")


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences."""
    return _ANSI.sub("", text)


def plain_reason(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """One plain line for a failure reason (see the module docstring).

    Without a traceback the reason's first non-empty line is kept. With one, the first exception
    line after the first frame (the root cause: Python prints a chained cause before the exception
    it caused) becomes ``TypeName: first line of its message``, behind the prefix of the reason's
    first line when it has one. Whitespace is collapsed and the result cut at ``limit`` characters.
    """
    lines = [line.rstrip() for line in strip_ansi(text).splitlines()]
    lines = [line for line in lines if line.strip()]
    if not lines:
        return "no reason given"
    summary = lines[0].strip()
    first_frame = next((i for i, line in enumerate(lines) if _FRAME.match(line)), None)
    if first_frame is not None:
        cause = _root_cause(lines[first_frame:])
        if cause is not None:
            prefix = _PREFIX.match(lines[0])
            summary = (prefix.group("prefix") if prefix else "") + cause
    return _cap(" ".join(summary.split()), limit)


def _root_cause(lines: list[str]) -> str | None:
    """``TypeName: message`` of the first exception line among ``lines`` (a traceback's tail)."""
    for i, line in enumerate(lines):
        match = _EXCEPTION.match(line)
        if match is None or line[:1].isspace():
            continue
        name = match.group("type").split("(")[0].rsplit(".", 1)[-1]
        if not name[:1].isupper():
            continue
        message = (match.group("message") or "").strip()
        if not message and i + 1 < len(lines) and not _FRAME.match(lines[i + 1]):
            message = lines[i + 1].strip()  # Flower's ClientAppException puts its text on the next line
        return f"{name}: {message}" if message else name
    return None


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 3)].rstrip() + "..."
