"""A fingerprint of the application code a site runs, for pinning the code a site approved.

In a Flower deployment the server ships the application; a site that approved one version of
fedsynth compares the fingerprint of the code a job runs with against the fingerprints its policy
lists. The fingerprint is a SHA-256 over the relative paths and bytes of every Python file of the
installed ``fedsynth`` package, in sorted order, so any change to any module changes it.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import fedsynth


def code_digest(root: Path) -> str:
    """SHA-256 over the ``*.py`` files under ``root`` (relative path and content, sorted)."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def app_code_digest() -> str:
    """The fingerprint of the fedsynth code installed here (computed once per process)."""
    return code_digest(Path(fedsynth.__file__).parent)
