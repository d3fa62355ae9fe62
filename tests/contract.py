"""An independent check of a run folder, kept with the tests (no ../shared needed).

It re-derives every hospital's epsilon from the history privacy.json states with Google's
dp-accounting (independent of the Opacus accountants fedsynth uses), under the neighbouring
relation privacy.json states: a reported epsilon must lie between the tight PLD epsilon of that
relation (lower: anything less under-reports) and the RDP epsilon of add/remove at the matching
sensitivity (upper). It also checks what the shared contract does not: that the privacy label in
words agrees with the numbers, that every history entry belongs to this run (or a declared other
release), and that every hospital whose update the server took has a ledger entry for that round.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import dp_accounting as dpa

from fedsynth.privacy.label import privacy_guarantee

logging.getLogger("absl").setLevel(logging.ERROR)  # dp-accounting's RDP order warnings

REQUIRED = [
    "config.toml",
    "metrics.jsonl",
    "privacy.json",
    "summary.json",
    "schema.json",
    "model",
    "synthetic/samples.npz",
    "synthetic/samples.png",
]


def _compose(acc, events: list[tuple[float, float, int]], scale: float):
    merged: dict[tuple[float, float], int] = {}  # composition is order-free: one PLD per (sigma, q)
    for sigma, q, steps in events:
        merged[(sigma, q)] = merged.get((sigma, q), 0) + steps
    for (sigma, q), steps in merged.items():
        if steps > 0:
            acc.compose(
                dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma * scale)), steps)
            )
    return acc


def epsilon_bounds(history: list[dict], delta: float, relation: str) -> tuple[float, float]:
    """(lower, upper) epsilon of ``history`` under ``relation`` (dp-accounting)."""
    events = [
        (float(e["noise_multiplier"]) / float(e.get("sensitivity", 1.0)), float(e["sample_rate"]), int(e["steps"]))
        for e in history
    ]
    if relation == "replace-one":
        lo = _compose(dpa.pld.PLDAccountant(dpa.NeighboringRelation.REPLACE_ONE), events, 1.0).get_epsilon(delta)
        hi = _compose(dpa.rdp.RdpAccountant(), events, 0.5).get_epsilon(delta)
    else:
        lo = _compose(dpa.pld.PLDAccountant(), events, 1.0).get_epsilon(delta)
        hi = _compose(dpa.rdp.RdpAccountant(), events, 1.0).get_epsilon(delta)
    return lo, max(lo, hi)


def shortfalls(run: Path) -> list[str]:
    short = [f"missing {name}" for name in REQUIRED if not (run / name).exists()]
    if short:
        return short
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    privacy = json.loads((run / "privacy.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    run_id = json.loads((run / "server" / "run.json").read_text())["run_id"]
    for part in ("tstr", "trtr"):
        if not isinstance(summary.get(part), dict) or "mcc" not in summary[part]:
            short.append(f"summary.json: no {part}.mcc")
    epsilons = []
    for hid, h in privacy["hospitals"].items():
        history, delta, eps = h["history"], h["delta"], h["epsilon"]
        relation = h.get("neighbouring_relation")
        if relation not in ("add-remove", "replace-one") or not history:
            short.append(f"hospital {hid}: no stated relation or an empty history")
            continue
        others = {json.dumps(e, sort_keys=True) for e in h.get("other_releases", [])}
        for e in history:
            if e.get("run") != run_id and json.dumps(e, sort_keys=True) not in others:
                short.append(f"hospital {hid}: history entry of round {e['round']} belongs to run {e.get('run')!r}")
        if any(float(e["noise_multiplier"]) == 0 for e in history if int(e["steps"]) > 0):
            if eps is not None:
                short.append(f"hospital {hid}: trained without noise but reports epsilon {eps}")
            continue
        lo, hi = epsilon_bounds(history, delta, relation)
        if eps is None or not math.isfinite(eps) or eps < 0.98 * lo or eps > 1.02 * hi:
            short.append(f"hospital {hid}: epsilon {eps} outside [{lo:.4g}, {hi:.4g}] ({relation})")
        epsilons.append(eps)
    private = privacy["private"] and bool(epsilons)
    releases = {
        e["phase"] in ("image-mean", "image-basis", "latent-moments")
        for h in privacy["hospitals"].values()
        for e in h["history"]
    }
    mechanism = {frozenset({True}): "Gaussian mechanism", frozenset({True, False}): "DP-SGD + Gaussian mechanism"}
    expected = privacy_guarantee(
        private,
        max(epsilons) if epsilons and private else None,
        max((h["delta"] for h in privacy["hospitals"].values()), default=None),
        privacy["neighbouring_relation"],
        privacy["reproducible_noise"],
        mechanism.get(frozenset(releases), "DP-SGD"),
    )
    if privacy["guarantee"]["level"] != expected.level or privacy["label"] != expected.label:
        short.append(f"privacy.json label {privacy['label']!r} disagrees with its numbers ({expected.label!r})")
    rounds_of = {hid: {int(e["round"]) for e in h["history"]} for hid, h in privacy["hospitals"].items()}
    for r in (x for x in lines if x.get("kind") == "server"):
        for hid in list(r.get("accepted") or []) + list(r.get("rejected") or {}):
            if r["round"] not in rounds_of.get(str(hid), set()):
                short.append(f"hospital {hid}: update taken in round {r['round']} without a ledger entry")
    return short
