"""The report's attack section: what a malicious server recovered from the hospitals' updates, in numbers and words.

A run with ``attack.threat_model != "none"`` leaves ``DIR/attack/`` behind (written by
:mod:`fedsynth.attacks.server`): ``attack.json`` (threat model, imprint bins, targets, architecture,
optimizer, sampling, attacked rounds), ``journal.jsonl`` (one line per inverted update) and
``reconstructions/*.npz``. Scoring them against the true records
(:func:`fedsynth.redteam.audit.audit_attack`) writes ``scores.json``, ``records.csv``, ``cdf.png`` and
``pairs-<target>.png`` to ``DIR/audit/attack/`` (they show real records).

:func:`attack_section` reads all of that, plus the run's ``privacy.json`` and, in a simulation, the
simulated sites' records, into one JSON-able dict: the threat model in words; per target ReRo@0.1,
ReRo@0.3, exact recoveries, median distance and the empirical CDF; per hospital its epsilon, the
measured ReRo on its own records and the theoretical ReRo bounds of its mechanism history
(:func:`fedsynth.privacy.reconstruction.reconstruction_bounds`) at the prior ``1/n`` of a baseline
guess among its ``n`` records; the sites' refusals in words; and a one-line finding.

The bounds and the measurement answer the same question from two sides: the bound is what DP-SGD
guarantees no reconstruction attack can beat (on average over a hospital's records), the
measurement is what this particular server achieved. A measured ReRo above a hospital's
worst-case bound would contradict its accounting; a non-private hospital's bound is 1 (nothing is
promised).

The record count ``n`` is known to the report only where it is not a secret of the site: in a
simulation (``DIR/sites/hospital-i/data.npz``) or when the hospital declared it public in its plan
(``privacy.json`` ``record_count``). Otherwise the section says that the bound needs the count.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from fedsynth.attacks.scoring import ETAS, EXACT_TOL, exact_recoveries, rero
from fedsynth.errors import DataError
from fedsynth.evaluation.audit import ATTACK_SCORES_DIR
from fedsynth.privacy.accounting import MechanismEvent
from fedsynth.privacy.reconstruction import reconstruction_bounds

#: The folder of a run that holds the malicious server's files.
ATTACK_DIR = "attack"

#: What each threat model let the server do (keys: ``attack.threat_model``).
THREAT_MODELS: dict[str, str] = {
    "code-shipping": (
        "the server shipped its own architecture with an imprint block and chose batch size, optimizer and steps"
    ),
    "weights-only": "honest code, crafted weights in the table encoder / latent discriminator",
    "honest": "control: unmodified model, same inversion",
    "tamper": "integrity attack: every model the server relayed between hospitals was altered",
}

#: How the distance of a true record to its closest reconstruction is measured, per target.
TARGET_METRICS: dict[str, str] = {
    "image": "1 - SSIM of the min-max normalized images",
    "table": (
        "normalized L2 of the encoded clinical row (numeric columns scaled by their public bounds, "
        "categories one-hot): 0.1 = an RMS error of 10% of each column's range"
    ),
    "latent": "normalized L2 of the latent code (per-dimension scale: the spread of the hospital's true latents)",
    "latent-image": "1 - SSIM of the images the server decoded from the latents it recovered",
}

#: At most this many points of each target's empirical CDF go into the evaluation.
CDF_POINTS = 200

#: Journal notes quoted in the section (the journal itself may hold one per round and hospital).
NOTES_SHOWN = 10


def attack_section(run_dir: str | Path) -> dict[str, Any] | None:
    """The attack section of ``run_dir``'s report, or None when the run has no ``attack/`` folder.

    The scores come from ``audit/attack/scores.json``, which only whoever holds the true records can
    write (:func:`fedsynth.redteam.audit.audit_attack`; ``fedsynth report`` runs it first on a
    simulation, whose run folder holds the simulated hospitals' records under ``sites/``); without
    it the section states what is missing.
    """
    run_dir = Path(run_dir)
    attack_dir = run_dir / ATTACK_DIR
    if not attack_dir.is_dir():
        return None
    description = _read_json(attack_dir / "attack.json") or {}
    privacy = _read_json(run_dir / "privacy.json")
    threat = str(description.get("threat_model", "unknown"))
    reconstructions = sorted((attack_dir / "reconstructions").glob("*.npz"))
    journal = _journal(attack_dir / "journal.jsonl")

    scored_dir = run_dir / ATTACK_SCORES_DIR
    scores = _read_json(scored_dir / "scores.json")
    scoring_note = None
    if scores is None:
        scores, scoring_note = _unscored(run_dir, reconstructions)

    per_hospital = _per_hospital_scores(scored_dir / "records.csv")
    targets = {name: _target(name, t) for name, t in sorted(((scores or {}).get("targets") or {}).items())}
    refusals = _refusals(run_dir, privacy)
    hospitals = _hospitals(run_dir, privacy, per_hospital)
    section: dict[str, Any] = {
        "threat_model": threat,
        "threat_model_words": THREAT_MODELS.get(threat, f"threat model {threat!r} (not described by this report)"),
        "setup": {
            "architecture": description.get("architecture"),
            "optimizer": description.get("optimizer"),
            "sampling": description.get("sampling"),
            "rounds": description.get("rounds"),
            "bins": description.get("bins"),
            "targets": [
                {"name": t.get("name"), "layer": t.get("layer"), "phase": t.get("phase")}
                for t in description.get("targets", [])
            ],
            "auxiliary": description.get("auxiliary"),
        },
        "journal": journal,
        "reconstruction_files": len(reconstructions),
        "scored": scores is not None,
        "scoring_note": scoring_note,
        "thresholds": {"rero": list(ETAS), "exact": EXACT_TOL},
        "targets": targets,
        "hospitals": hospitals,
        "refusals": refusals,
        "privacy_json": privacy is not None,
        "images": _images(scored_dir, targets),
    }
    section["finding"] = _finding(section)
    return section


def attack_images(run_dir: str | Path, section: dict[str, Any]) -> dict[str, np.ndarray]:
    """The section's PNG files as byte arrays (keys ``attack_png_<name>``), for the page to embed.

    They travel with the evaluation's other per-record arrays (the pairs show real records), so a
    page re-rendered from saved arrays still shows them.
    """
    out: dict[str, np.ndarray] = {}
    for name, rel in (section.get("images") or {}).items():
        path = Path(run_dir) / rel
        if path.is_file():
            out[f"attack_png_{name}"] = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    return out


# ------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when the file is missing; invalid JSON names the file."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(str(path), f"not valid JSON ({e})", "a JSON object") from e
    if not isinstance(value, dict):
        raise DataError(str(path), f"a JSON {type(value).__name__}", "a JSON object")
    return value


def _journal(path: Path) -> dict[str, Any]:
    """What the server's journal says it did: updates inverted, candidate records, rounds, notes."""
    updates, candidates, rounds, notes = 0, 0, set(), []
    if path.is_file():
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash: the reconstructions files are the record
            if "found" in entry:
                updates += 1
                candidates += int(entry["found"])
                rounds.add(int(entry.get("round", 0)))
            elif "note" in entry and len(notes) < NOTES_SHOWN:
                notes.append(
                    f"round {entry.get('round')}, hospital {entry.get('hospital')}, "
                    f"{entry.get('target')}: {entry['note']}"
                )
    return {"updates_inverted": updates, "candidates": candidates, "rounds": sorted(rounds), "notes": notes}


def _sites_with_records(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "sites").glob("hospital-*/data.npz"))


def _unscored(run_dir: Path, reconstructions: list[Path]) -> tuple[dict[str, Any] | None, str]:
    """(None, why) for a run without scores.json."""
    if not reconstructions:
        return None, "the server recovered nothing (no reconstructions to score)"
    if not _sites_with_records(run_dir):
        return None, (
            "not scored: scoring needs the true records, which only the hospitals hold (a simulation's "
            "run folder has them under sites/; a data owner runs fedsynth.redteam.audit.audit_attack)"
        )
    return None, "not scored yet: `fedsynth report` scores it from the simulated sites' records"


def _cdf(distances: np.ndarray) -> list[list[float]]:
    """[distance, share of records at or below it] points of the empirical CDF (at most CDF_POINTS)."""
    d = np.sort(np.asarray(distances, dtype=np.float64))
    if d.size == 0:
        return []
    share = np.arange(1, d.size + 1) / d.size
    if d.size > CDF_POINTS:
        idx = np.unique(np.ceil(np.linspace(1, d.size, CDF_POINTS)).astype(np.int64) - 1)
        d, share = d[idx], share[idx]
    return [[float(a), float(b)] for a, b in zip(d, share, strict=True)]


def _target(name: str, t: dict[str, Any]) -> dict[str, Any]:
    """One target of scores.json in the section's form (counts, ReRo, CDF and a finding)."""
    distances = np.asarray(t.get("distances") or [], dtype=np.float64)
    records = int(t.get("records", t.get("n", distances.size)))
    within = {str(eta): int(np.sum(distances < eta)) for eta in ETAS} if distances.size else {}
    out = {
        "metric": TARGET_METRICS.get(name, "distance to the closest reconstruction"),
        "records": records,
        "rero_01": t.get("rero_01"),
        "rero_03": t.get("rero_03"),
        "exact": t.get("exact"),
        "within_01": within.get(str(ETAS[0]), round(float(t.get("rero_01") or 0.0) * records)),
        "median_distance": t.get("median_distance"),
        "min_distance": float(distances.min()) if distances.size else None,
        "cdf": _cdf(distances),
    }
    out["finding"] = _target_finding(out)
    return out


def _target_finding(t: dict[str, Any]) -> str:
    """One target's result in plain words ("the server reconstructed 31 of 32 records exactly")."""
    n, exact, within = t["records"], int(t.get("exact") or 0), int(t.get("within_01") or 0)
    if n == 0:
        return "no record to score"
    if exact == n:
        return f"the server reconstructed all {n} records exactly"
    if exact:
        more = f", {within - exact} more within 0.1" if within > exact else ""
        return f"the server reconstructed {exact} of {n} records exactly{more}"
    if within:
        return f"no record exactly; {within} of {n} within 0.1"
    closest = f" (closest {t['min_distance']:.2f})" if t.get("min_distance") is not None else ""
    return f"no record within 0.1{closest}"


def _per_hospital_scores(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """records.csv grouped by hospital and target: records, ReRo@0.1, ReRo@0.3, exact recoveries."""
    if not path.is_file():
        return {}
    grouped: dict[str, dict[str, list[float]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            grouped.setdefault(str(row["hospital"]), {}).setdefault(row["target"], []).append(float(row["distance"]))
    return {
        hid: {
            target: {
                "records": len(d),
                "rero_01": rero(np.asarray(d), ETAS[0]),
                "rero_03": rero(np.asarray(d), ETAS[1]),
                "exact": exact_recoveries(np.asarray(d), EXACT_TOL),
            }
            for target, d in sorted(targets.items())
        }
        for hid, targets in grouped.items()
    }


def _record_count(run_dir: Path, hid: str, entry: dict[str, Any]) -> tuple[int | None, str]:
    """(records of hospital ``hid``, where the number comes from) for the bound's prior."""
    site = run_dir / "sites" / f"hospital-{hid}" / "data.npz"
    if site.is_file():
        from fedsynth.data.records_file import load_records

        return len(load_records(site, source=f"hospital {hid}")), "simulated site's records (sites/)"
    declared = entry.get("record_count")
    if isinstance(declared, int) and not isinstance(declared, bool):
        return declared, "declared public in the hospital's plan (privacy.json)"
    return None, "private to the site"


def _hospitals(
    run_dir: Path, privacy: dict[str, Any] | None, measured: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """Per hospital: epsilon, record count, ReRo bounds at prior 1/n, and the ReRo measured on its records."""
    entries: dict[str, dict[str, Any]] = dict((privacy or {}).get("hospitals") or {})
    ids = sorted(set(entries) | set(measured), key=lambda h: (len(h), h))
    out: dict[str, dict[str, Any]] = {}
    for hid in ids:
        entry = entries.get(hid, {})
        n, source = _record_count(run_dir, hid, entry)
        bounds, note = None, None
        history = [MechanismEvent.from_dict(e) for e in entry.get("history", [])]
        if not entry:
            note = "not in privacy.json: no mechanism history to bound"
        elif not history:
            note = "the hospital never trained: nothing to bound"
        elif n is None:
            note = "the bound needs the hospital's record count, which the site keeps private"
        elif n < 2:
            note = f"{n} record: a guess among the candidates already succeeds (prior 1)"
        else:
            bounds = reconstruction_bounds(history, 1.0 / n).to_dict()
        out[hid] = {
            "epsilon": entry.get("epsilon"),
            "delta": entry.get("delta"),
            "private": entry.get("private"),
            "records": n,
            "records_source": source,
            "bounds": bounds,
            "bounds_note": note,
            "measured": measured.get(hid, {}),
        }
    return out


def _refusals(run_dir: Path, privacy: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every refusal of a site, with its words; from privacy.json, else (a run that ended on a
    refusal, in a simulation) from the simulated sites' own logs."""
    found: list[tuple[str, Any, str, str]] = []
    if privacy is not None:
        for hid, entries in sorted((privacy.get("refusals") or {}).items()):
            for r in entries:
                found.append((str(hid), r.get("round"), str(r.get("reason", "")), "privacy.json"))
    else:
        for hid, r in _site_log_refusals(run_dir):
            found.append((hid, r.get("round"), str(r.get("reason", "")), "the simulated site's log"))
    return [
        {
            "hospital": hid,
            "round": rnd,
            "reason": reason,
            "source": source,
            "words": (
                f"hospital {hid} refused round {rnd}: {reason}. The guardrail worked: the site trained "
                f"nothing that round and sent the server no update to invert."
            ),
        }
        for hid, rnd, reason, source in found
    ]


def _site_log_refusals(run_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """Refusals the simulated sites logged for this run (state/runs/<run id>/site-log.jsonl)."""
    run_info = _read_json(run_dir / "server" / "run.json") or {}
    out: list[tuple[str, dict[str, Any]]] = []
    for site in sorted((run_dir / "sites").glob("hospital-*")):
        hid = site.name.removeprefix("hospital-")
        if run_info.get("run_id"):
            from fedsynth.hospital.store import run_directory

            logs = [run_directory(site / "state", str(run_info["run_id"])) / "site-log.jsonl"]
        else:
            logs = sorted((site / "state" / "runs").glob("*/site-log.jsonl"))
        for log in logs:
            if not log.is_file():
                continue
            for line in log.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if entry.get("kind") == "refused":
                    out.append((hid, entry))
    return out


def _images(scored_dir: Path, targets: dict[str, Any]) -> dict[str, str]:
    """The scoring's PNG files that exist, relative to the run folder (name -> path)."""
    names = {"cdf": "cdf.png"} | {f"pairs-{t}": f"pairs-{t}.png" for t in targets}
    return {k: f"{ATTACK_SCORES_DIR}/{v}" for k, v in names.items() if (scored_dir / v).is_file()}


def _finding(section: dict[str, Any]) -> str:
    """The section's result in one plain line."""
    control = "control (honest server): " if section["threat_model"] == "honest" else ""
    targets = section["targets"]
    refused = {r["hospital"] for r in section["refusals"]}
    if targets:
        parts = [
            t["finding"] if len(targets) == 1 else f"{name}: {t['finding']}"
            for name, t in sorted(targets.items(), key=lambda kv: (-(kv[1]["exact"] or 0), -(kv[1]["within_01"] or 0)))
        ]
        line = control + "; ".join(parts)
        bounded = [h["bounds"]["worst_case"] for h in section["hospitals"].values() if h["private"] and h["bounds"]]
        if bounded:
            line += f"; DP-SGD bounds any reconstruction's success at {max(bounded):.2f} (worst case, prior 1/n)"
        if refused:
            line += f" ({_hospital_list(refused)} refused)"
        return line
    if refused and not section["reconstruction_files"]:
        return (
            f"{control}{_hospital_list(refused)} refused the attack: the guardrails stopped it "
            "before any update reached the server"
        )
    return control + str(section.get("scoring_note") or "nothing to report")


def _hospital_list(ids: set[str]) -> str:
    """ "hospital 0" or "hospitals 0, 1"."""
    ordered = sorted(ids, key=lambda h: (len(h), h))
    return ("hospital " if len(ordered) == 1 else "hospitals ") + ", ".join(ordered)
