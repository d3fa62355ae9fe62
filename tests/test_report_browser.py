"""report.html in a real headless browser (Debian's chromium): loads without errors, shows evaluation.json.

The page (DIR/audit/report.html) opens with the audit banner; the privacy banner follows the run's
guarantee level.

The browser is driven through its command line (no extra Python package): ``--dump-dom`` prints the
DOM after the page's load event (and its inline self-check script) ran, ``--enable-logging=stderr``
prints every console message and uncaught exception as a ``CONSOLE`` line. The report never logs,
so any CONSOLE line is an error. A negative control checks that this harness does see errors.

Without chromium the tests skip, unless the environment variable CI is set: then the fixture tries
``apt-get install -y chromium`` (as root) and fails if the browser is still missing.
"""

from __future__ import annotations

import html
import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from test_evaluation_report import make_run

from fedsynth.evaluation.page import fmt
from fedsynth.evaluation.report import evaluate_run, render_report

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=10000",
)


def load(chromium: str, page: Path, profile: Path) -> tuple[str, list[str]]:
    """(DOM after load, console lines) of ``page`` in a fresh headless chromium profile."""
    profile.mkdir(parents=True, exist_ok=False)
    proc = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


class _Cells(HTMLParser):
    """Collects data-key/data-value cells (with their text), verdicts, body attributes and the banners."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, dict[str, Any]] = {}
        self.verdicts: dict[str, str] = {}
        self.body: dict[str, str] = {}
        self.first_div: str | None = None
        self.privacy_banner: str | None = None
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        if tag == "div" and self.first_div is None:
            self.first_div = a.get("id", "")
        if a.get("id") == "privacy-banner":
            self.privacy_banner = a.get("data-level", "")
        if "data-key" in a:
            self.cells[a["data-key"]] = {"value": json.loads(a["data-value"]), "id": a.get("id"), "text": ""}
            self._open = a["data-key"]
        if a.get("id", "").startswith("verdict-"):
            self.verdicts[a["id"][len("verdict-") :]] = a.get("data-level", "")

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.cells[self._open]["text"] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._open = None


def test_harness_sees_console_errors(chromium: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><p>x</p><script>console.error('boom-console');</script>"
        "<script>throw new Error('boom-throw');</script></body></html>"
    )
    _, console = load(chromium, bad, tmp_path / "profile")
    assert any("boom-console" in line for line in console)
    assert any("Uncaught Error: boom-throw" in line for line in console)


def test_report_loads_without_errors_and_matches_evaluation_json(chromium: str, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", copies=20)
    ev, arrays = evaluate_run(run, tsne=True, local_utility=True)
    page = render_report(run, evaluation=ev, arrays=arrays)
    assert page == run / "audit" / "report.html"
    evaluation = json.loads((run / "audit" / "evaluation.json").read_text())

    dom, console = load(chromium, page, tmp_path / "profile")
    assert console == [], "console output / page errors:\n" + "\n".join(console)
    parsed = _Cells()
    parsed.feed(dom)
    assert parsed.body.get("data-selfcheck") == "ok", html.unescape(dom[dom.find("selfcheck-errors") :][:500])
    assert int(parsed.body.get("data-images", "0")) >= 15

    summary = evaluation["summary"]
    assert set(parsed.cells) == set(summary)
    for key, value in summary.items():
        cell = parsed.cells[key]
        assert cell["id"] == f"sum-{key}"
        assert cell["value"] == value, key
        assert cell["text"] == fmt(value, key), key
    assert parsed.verdicts == {name: v["level"] for name, v in evaluation["verdicts"].items()}
    assert summary["attack"] == "no attack run"  # an attacked run: tests/test_report_attack.py
    assert parsed.first_div == "audit-banner" and "AUDIT ARTEFACT" in dom
    assert parsed.privacy_banner == "dp"  # epsilon 4 with secret noise: the green banner
