"""A hospital's privacy plan for one run: the server's request held to the site's policy.

The plan is resolved once per run, before any training, from the job the server sent (its privacy
request and training schedule), the site's policy, the site's record count and its ledger of
earlier runs. The result is either the plan the site will run, at least as strict as both the
request and the policy, or the reason it refuses. In target-epsilon mode the noise multiplier is
calibrated so that the run's planned mechanism history spends exactly the target.

What the plan decides about the record count n:

- ``record_count = "private"`` (add/remove neighbours): the sample rate is the server's explicit
  request and the noisy gradient sum is averaged by the public ``train.batch_size``; nothing the
  site releases depends on n.
- ``record_count = "public"``: n is a declared public fact, sent with every reply, the sample rate
  may be ``batch_size / n``, and epsilon is stated under replace-one neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsynth.config.schema import PrivacyConfig, TrainConfig
from fedsynth.models.gaussian import GAUSSIAN_PHASES, phase_sensitivity
from fedsynth.privacy.accounting import MechanismEvent, Relation, calibrate_noise_multiplier, compute_epsilon
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.site.policy import SitePolicy

#: Ledger phase name of each training phase's private network.
PHASE_MECHANISM = {"autoencoder": "autoencoder", "gan": "discriminator"}

#: Per-record sensitivity of fedsynth's DP steps, in units of the clipping norm: every record is
#: exactly one clipped row (the discriminator pairs each real latent with its own fake latent).
STEP_SENSITIVITY = 1.0


@dataclass(frozen=True)
class PrivacyPlan:
    """What one hospital runs in one run (all of it is reported to the server as public)."""

    private: bool
    sample_rate: float
    noise_multiplier: float
    max_grad_norm: float
    delta: float
    #: Epsilon this run may spend (the server's budget), and the site's lifetime cap.
    run_budget: float | None
    lifetime_budget: float | None
    relation: Relation
    #: The record count when the site declares it public, else None.
    record_count: int | None
    #: Public constant the noisy gradient sum is divided by (expected batch size).
    normalizer: float
    reproducible: bool
    accountant: str
    run_id: str

    def event(self, phase: str, server_round: int, steps: int, train: TrainConfig | None = None) -> MechanismEvent:
        """The ledger entry of ``steps`` DP-SGD steps of ``phase`` in ``server_round`` (a release of
        the Gaussian latent model: one full-data Gaussian mechanism at its share's sensitivity)."""
        return phase_event(
            phase,
            server_round,
            self.noise_multiplier if self.private else 0.0,
            self.sample_rate,
            steps,
            self.relation,
            self.run_id,
            self.max_grad_norm,
            train,
        )

    def to_dict(self) -> dict:
        return {
            "private": self.private,
            "sample_rate": self.sample_rate,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.max_grad_norm,
            "delta": self.delta,
            "run_budget": self.run_budget,
            "lifetime_budget": self.lifetime_budget,
            "neighbouring_relation": self.relation,
            "record_count": self.record_count if self.record_count is not None else "private",
            "normalizer": self.normalizer,
            "reproducible_noise": self.reproducible,
            "accountant": self.accountant,
            "run": self.run_id,
        }


def local_steps(train: TrainConfig, phase: str) -> int:
    """DP-SGD steps of one round of ``phase`` (one release for the Gaussian model's phases)."""
    if phase in GAUSSIAN_PHASES:
        return 1
    return train.local_steps_autoencoder if phase == "autoencoder" else train.local_steps_gan


def phase_event(
    phase: str,
    server_round: int,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    relation: Relation,
    run: str,
    max_grad_norm: float,
    train: TrainConfig | None,
) -> MechanismEvent:
    """The mechanism one round of ``phase`` runs. DP-SGD phases: ``steps`` subsampled Gaussian
    steps at sensitivity 1 (each record one clipped row). Gaussian-model releases: the whole data
    set (sample rate 1), one step, at the sensitivity of the phase's share of the budget."""
    if phase in GAUSSIAN_PHASES:
        if train is None:
            raise ValueError(f"the ledger event of phase {phase!r} needs the training schedule")
        return MechanismEvent(
            phase,
            server_round,
            noise_multiplier,
            1.0,
            steps,
            sensitivity=phase_sensitivity(train, phase),
            relation=relation,
            run=run,
            max_grad_norm=1.0,
        )
    return MechanismEvent(
        PHASE_MECHANISM[phase],
        server_round,
        noise_multiplier,
        sample_rate,
        steps,
        sensitivity=STEP_SENSITIVITY,
        relation=relation,
        run=run,
        max_grad_norm=max_grad_norm,
    )


def planned_history(
    train: TrainConfig, sample_rate: float, noise_multiplier: float, relation: Relation = "add-remove", run: str = ""
) -> list[MechanismEvent]:
    """Every mechanism event of a full run, in order, at one noise multiplier."""
    return [
        phase_event(phase, r, noise_multiplier, sample_rate, local_steps(train, phase), relation, run, 1.0, train)
        for r, phase in enumerate(train.phases, start=1)
    ]


def resolve_plan(
    request: PrivacyConfig,
    train: TrainConfig,
    policy: SitePolicy,
    num_records: int,
    earlier: PrivacyLedger,
    run_id: str,
) -> PrivacyPlan | str:
    """The plan the site runs for this request, or the reason it refuses (a sentence).

    ``earlier`` is the site's ledger before this run (every earlier run on the same records).
    """
    if num_records <= 0:
        return "the site has no records to train on"
    if not request.enabled:
        if policy.require_dp:
            return "site policy requires DP, but the server asked for privacy.enabled = false"
    elif request.reproducible_noise and not policy.allow_reproducible_noise:
        return (
            "site policy forbids reproducible noise (privacy.reproducible_noise = true would let anyone "
            "holding the seed regenerate the DP noise)"
        )
    if request.enabled and train.sampling != "poisson":
        return (
            f"train.sampling = {train.sampling!r} cannot be accounted: the site's DP accounting assumes "
            "Poisson batches (fixed-size batches are for non-private runs)"
        )
    if request.enabled and request.delta > policy.max_delta * (1 + 1e-12):
        return f"requested delta {request.delta:g} exceeds the site's ceiling {policy.max_delta:g}"
    public = policy.record_count == "public"
    if request.sample_rate > 0:
        sample_rate = request.sample_rate
    elif public:
        sample_rate = min(1.0, train.batch_size / num_records)
    else:
        return (
            "the site keeps its record count private: the server must request an explicit "
            "privacy.sample_rate (batch_size / records would reveal it)"
        )
    if request.enabled and sample_rate > policy.max_sample_rate * (1 + 1e-12):
        return f"sample rate {sample_rate:.4g} exceeds the site's maximum {policy.max_sample_rate:.4g}"
    relation: Relation = "replace-one" if public else "add-remove"
    clip = policy.max_grad_norm if policy.max_grad_norm > 0 else request.max_grad_norm
    common = dict(
        sample_rate=sample_rate,
        max_grad_norm=clip,
        delta=request.delta,
        relation=relation,
        record_count=num_records if public else None,
        normalizer=float(train.batch_size),
        reproducible=bool(request.enabled and request.reproducible_noise),
        accountant=request.accountant,
        run_id=run_id,
        lifetime_budget=policy.lifetime_budget,
    )
    if not request.enabled:
        return PrivacyPlan(private=False, noise_multiplier=0.0, run_budget=None, **common)  # type: ignore[arg-type]

    run_budget = request.budget
    lifetime = policy.lifetime_budget
    spent = (earlier.epsilon(request.delta) or 0.0) if earlier.events else 0.0
    if lifetime is not None and run_budget > lifetime * (1 + 1e-9):
        return f"requested budget epsilon {run_budget:.4g} exceeds the site's lifetime budget {lifetime:.4g}"
    sigma = request.noise_multiplier
    if sigma > 0:
        if sigma < policy.min_noise_multiplier:
            return (
                f"requested noise multiplier {sigma:.4g} is below the site's minimum {policy.min_noise_multiplier:.4g}"
            )
    else:
        try:
            sigma = calibrate_noise_multiplier(
                planned_history(train, sample_rate, 1.0, relation),
                request.target_epsilon,
                request.delta,
                request.accountant,
            )
        except ValueError as e:
            return f"cannot calibrate noise for target epsilon {request.target_epsilon:g}: {e}"
        sigma = max(sigma, policy.min_noise_multiplier)
    plan = PrivacyPlan(private=True, noise_multiplier=sigma, run_budget=run_budget, **common)  # type: ignore[arg-type]
    if lifetime is not None:
        planned = planned_history(train, sample_rate, sigma, relation, run_id)
        after = compute_epsilon([*earlier.events, *planned], request.delta, request.accountant)
        if request.noise_multiplier <= 0 and (after is None or after > lifetime * (1 + 1e-9)):
            return (
                f"the planned run would take the site's lifetime epsilon to {after:.4g} > {lifetime:.4g} "
                f"(already spent {spent:.4g} on earlier runs)"
            )
    return plan


def within_budget(plan: PrivacyPlan, ledger: PrivacyLedger, event: MechanismEvent) -> str | None:
    """None when ``event`` keeps the site within both budgets, else the reason to refuse it."""
    if not plan.private:
        return None
    this_run = [e for e in ledger.events if e.run == plan.run_id]
    checks = [("run", plan.run_budget, this_run), ("lifetime", plan.lifetime_budget, list(ledger.events))]
    for name, budget, events in checks:
        if budget is None:
            continue
        after = compute_epsilon([*events, event], plan.delta, plan.accountant)
        if after is None or after > budget * (1 + 1e-9):
            spent = compute_epsilon(events, plan.delta, plan.accountant) or 0.0
            return (
                f"refuses round {event.round}: {name} epsilon would reach {after:.4g} > {name} budget "
                f"{budget:.4g} (spent so far {spent:.4g} at delta {plan.delta:g})"
            )
    return None
