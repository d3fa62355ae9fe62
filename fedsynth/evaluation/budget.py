"""The privacy budget of a run as the report states it: per-hospital epsilons and the guarantee.

The words the report uses for a run's privacy status (banner, ``privacy_budget`` verdict) come from
:func:`fedsynth.privacy.label.privacy_guarantee`, never from the mere presence of an epsilon: a
finite but huge epsilon (``target_epsilon = 1e308``) is "differentially private" on paper only.
privacy.json records the guarantee the run computed; an older privacy.json without one gets it
computed here from its own numbers. When both exist the stricter of the two is used, so a
hand-edited or inconsistent file cannot make the report greener than its epsilon allows.
"""

from __future__ import annotations

from typing import Any

from fedsynth.privacy.label import MEANINGFUL_EPSILON, Guarantee, privacy_guarantee

#: Guarantee levels from weakest to strongest claim; the report uses the weaker of two candidates.
_STRENGTH = {"not-private": 0, "none": 1, "dp": 2}

#: The words the banner puts in front of a level-"none" label (the label itself may not say it).
NO_GUARANTEE = "NO MEANINGFUL FORMAL GUARANTEE"

_RELEASE_FIELDS = ("what", "where", "basis")


def privacy_budget(privacy_json: dict[str, Any] | None) -> dict[str, Any]:
    """The ``privacy_budget`` section of evaluation.json, read from privacy.json.

    Holds the per-hospital table (epsilon as recorded by the run's accountant, mechanism runs,
    steps, noise multipliers, and each hospital's neighbouring relation and clipping norm when
    recorded), the largest epsilon, the ``guarantee`` (level, label, meaning), the neighbouring
    relation, whether the noise was reproducible from a seed (null: privacy.json does not say), and
    the facts privacy.json declares it releases outside the DP guarantee (``declared_releases``).
    """
    if privacy_json is None:
        return {
            "available": False,
            "reason": "no privacy.json in the run folder",
            "private": None,
            "guarantee": None,
            "declared_releases": [],
            "hospitals": {},
        }
    hospitals = {str(hid): _hospital(h) for hid, h in privacy_json.get("hospitals", {}).items()}
    private = bool(privacy_json.get("private", False))
    eps = [h["epsilon"] for h in hospitals.values() if h["epsilon"] is not None]
    deltas = [h["delta"] for h in hospitals.values() if h["delta"] is not None]
    epsilon_max = max(eps) if eps and private else None
    delta = max(deltas) if deltas else None
    relation = privacy_json.get("neighbouring_relation") or _common(hospitals, "neighbouring_relation") or "unstated"
    stated = privacy_json.get("reproducible_noise")
    reproducible = None if stated is None else bool(stated)
    guarantee, note = _guarantee(
        privacy_json.get("guarantee"), private, epsilon_max, delta, relation, bool(reproducible)
    )
    out: dict[str, Any] = {
        "available": True,
        "private": private,
        "label": guarantee["label"],
        "guarantee": guarantee,
        "neighbouring_relation": relation,
        "reproducible_noise": reproducible,
        "declared_releases": _releases(privacy_json.get("declared_releases")),
        "hospitals": hospitals,
        "epsilon_max": epsilon_max,
        "delta": delta,
    }
    if note:
        out["note"] = note
    return out


def guarantee_of(budget: dict[str, Any]) -> dict[str, Any] | None:
    """The budget's guarantee; computed from its numbers for a section written without one (None: no privacy.json)."""
    if not budget.get("available"):
        return None
    if budget.get("guarantee"):
        return budget["guarantee"]
    relation = budget.get("neighbouring_relation") or "unstated"
    g = privacy_guarantee(
        bool(budget.get("private")),
        budget.get("epsilon_max"),
        budget.get("delta"),
        relation,
        bool(budget.get("reproducible_noise")),
    )
    return g.to_dict()


def budget_verdict(budget: dict[str, Any]) -> dict[str, str]:
    """The ``privacy_budget`` verdict: "info" only for a meaningful DP guarantee.

    Level "none" (DP-SGD ran but the guarantee is vacuous or void) fails: it is the case most
    likely to be mistaken for a private run. A non-private baseline warns, as it says so itself.
    """
    g = guarantee_of(budget)
    if g is None:
        return {"level": "n/a", "text": "no privacy.json"}
    if g["level"] == "dp":
        return {"level": "info", "text": g["label"]}
    if g["level"] == "none":
        return {"level": "fail", "text": banner_text(g)}
    return {"level": "warn", "text": g["label"]}


def banner_text(guarantee: dict[str, Any]) -> str:
    """The headline of the privacy banner: the label, led by NO MEANINGFUL FORMAL GUARANTEE at level none."""
    label = str(guarantee.get("label", ""))
    if guarantee.get("level") == "none" and NO_GUARANTEE not in label:
        return f"{NO_GUARANTEE}: {label}"
    return label


def _hospital(h: dict[str, Any]) -> dict[str, Any]:
    history = h.get("history", [])
    out = {
        "epsilon": h.get("epsilon"),
        "delta": h.get("delta"),
        "accountant": h.get("accountant"),
        "target_epsilon": h.get("target_epsilon"),
        "mechanism_runs": len(history),
        "steps": int(sum(int(e.get("steps", 0)) for e in history)),
        "noise_multipliers": sorted({float(e["noise_multiplier"]) for e in history if "noise_multiplier" in e}),
    }
    for key in ("neighbouring_relation", "max_grad_norm"):
        if key in h:
            out[key] = h[key]
    return out


def _common(hospitals: dict[str, dict[str, Any]], key: str) -> str | None:
    """The value every hospital records for ``key``, or None when they differ or none does."""
    values = {str(h[key]) for h in hospitals.values() if h.get(key) is not None}
    return values.pop() if len(values) == 1 else None


def _guarantee(
    recorded: Any,
    private: bool,
    epsilon_max: float | None,
    delta: float | None,
    relation: str,
    reproducible: bool,
) -> tuple[dict[str, Any], str | None]:
    """The guarantee to show, and a note when privacy.json's own one was missing, malformed or too generous."""
    computed = privacy_guarantee(private, epsilon_max, delta, relation, reproducible)
    if not (isinstance(recorded, dict) and recorded.get("level") in _STRENGTH and recorded.get("label")):
        note = None if recorded is None else "privacy.json 'guarantee' is malformed: computed from its epsilon"
        return computed.to_dict(), note
    if _STRENGTH[computed.level] < _STRENGTH[recorded["level"]]:
        note = (
            f"privacy.json claims guarantee level '{recorded['level']}', but its own epsilon and flags give "
            f"'{computed.level}': the report uses the latter"
        )
        return computed.to_dict(), note
    return {**_defaults(computed, recorded["level"]), **recorded}, None


def _defaults(computed: Guarantee, level: str) -> dict[str, Any]:
    """Fields a recorded guarantee may lack: the threshold, and the meaning when the levels agree."""
    return {
        "meaning": computed.meaning if computed.level == level else "",
        "meaningful_epsilon_threshold": MEANINGFUL_EPSILON,
    }


def _releases(value: Any) -> list[dict[str, str]]:
    """privacy.json's declared releases as {what, where, basis} rows (missing fields empty)."""
    if not isinstance(value, list):
        return []
    rows = [r if isinstance(r, dict) else {"what": r} for r in value]
    return [{k: "" if r.get(k) is None else str(r[k]) for k in _RELEASE_FIELDS} for r in rows]
