"""One hospital: its data partition, models, optimizers, DP engines, ledger and RNG, kept across rounds.

The hospital is a library object: given a :class:`RoundInstruction` it trains and returns a
:class:`HospitalReply`. The Flower ClientApp, and any Flower-free runner, only translate messages
to this call and back. Its whole state saves and restores as one dict (:meth:`state_dict`), which is
what resume, crash recovery and real sites rely on.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from fedsynth.config.schema import RunConfig
from fedsynth.data.records import Dataset
from fedsynth.federation.aggregation import merge_window
from fedsynth.hospital.plan import PrivacyPlan, local_steps, make_privacy_plan
from fedsynth.models.generator import build_generator, phase_networks
from fedsynth.privacy.dpsgd import DPNetwork, backward, poisson_sample
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.protocol import Arrays, HospitalReply, RoundInstruction

STATE_FORMAT = 1


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Hospital:
    """A simulated or real hospital taking part in federated generator training."""

    def __init__(self, hospital_id: int, data: Dataset, config: RunConfig, device: torch.device | str = "cpu") -> None:
        if len(data) == 0:
            raise ValueError(f"hospital {hospital_id} has no records")
        self.hospital_id = hospital_id
        self.config = config
        self.device = torch.device(device)
        self.schema = data.schema
        self.num_examples = len(data)
        self.plan: PrivacyPlan = make_privacy_plan(len(data), config.train, config.privacy)
        self.ledger = PrivacyLedger(delta=config.privacy.delta, accountant=config.privacy.accountant)
        self.rounds_done: list[int] = []

        seed = config.seed * 100_003 + hospital_id
        self.sample_rng = torch.Generator().manual_seed(seed)
        self.noise_rng = torch.Generator(device=self.device).manual_seed(seed + 7)

        # Data stays on the device for the whole run.
        self.images = None if data.images is None else torch.tensor(data.images, device=self.device)
        self.clinical = None if data.clinical is None else torch.tensor(data.clinical, device=self.device)
        self.labels = torch.tensor(data.labels, device=self.device)

        self.model = build_generator(self.schema, config.model, config.seed).to(self.device)
        t, p = config.train, self.plan
        common = dict(
            private=p.private,
            noise_multiplier=p.noise_multiplier,
            max_grad_norm=p.max_grad_norm,
            expected_batch_size=p.sample_rate * self.num_examples,
            noise_generator=self.noise_rng,
        )
        self.autoencoder = DPNetwork(self.model.autoencoder, lr=t.lr_autoencoder, betas=(0.9, 0.999), **common)
        self.discriminator = DPNetwork(self.model.discriminator, lr=t.lr_discriminator, **common)
        self.generator_optimizer = torch.optim.Adam(
            self.model.generator.parameters(), lr=t.lr_generator, betas=(0.5, 0.999)
        )

    # -- one round -----------------------------------------------------------------------------
    def train_round(self, instruction: RoundInstruction) -> HospitalReply:
        """Load the received weights, check the budget, train the round's phase, reply."""
        if instruction.weights is not None:
            self.model.load_weights(instruction.weights)
        if instruction.merge:
            merged = merge_window(
                self.model.weights(),
                instruction.merge,
                instruction.merge_rule,
                own_weight=instruction.own_weight,
                **instruction.merge_params,
            )
            self.model.load_weights(merged)
        phase = instruction.phase
        steps = local_steps(self.config.train, phase)
        event = self.plan.event(phase, instruction.server_round, steps)
        refusal = self._budget_refusal([event])
        if refusal is not None:
            return self._reply(instruction, weights=None, metrics={}, refused=refusal)
        if phase == "autoencoder":
            metrics = self._train_autoencoder(steps)
        elif phase == "gan":
            metrics = self._train_gan(steps)
        else:
            raise ValueError(f"unknown training phase '{phase}' (expected 'autoencoder' or 'gan')")
        self.ledger.record(event)
        self.rounds_done.append(instruction.server_round)
        epsilon = self.ledger.epsilon()
        metrics["epsilon"] = float("nan") if epsilon is None else epsilon
        weights = {k: v for k, v in self.model.weights().items() if k.split(".")[0] in phase_networks(phase)}
        return self._reply(instruction, weights=weights, metrics=metrics, refused=None)

    def _reply(
        self, instruction: RoundInstruction, weights: Arrays | None, metrics: dict, refused: str | None
    ) -> HospitalReply:
        return HospitalReply(
            hospital_id=self.hospital_id,
            server_round=instruction.server_round,
            num_examples=self.num_examples,
            weights=weights,
            metrics=metrics,
            ledger=self.ledger.to_dict(),
            refused=refused,
        )

    def _budget_refusal(self, planned: list) -> str | None:
        """A reason to refuse when ``planned`` would take the hospital past its budget."""
        if not self.plan.private or self.plan.budget is None:
            return None
        after = self.ledger.epsilon_after(planned)
        if after is None or after > self.plan.budget * (1 + 1e-9):
            spent = self.ledger.epsilon() or 0.0
            return (
                f"hospital {self.hospital_id} refuses round {planned[0].round}: epsilon would reach "
                f"{after:.4g} > budget {self.plan.budget:.4g} (spent so far {spent:.4g} at delta {self.plan.delta:g})"
            )
        return None

    def _batch(self) -> torch.Tensor:
        return poisson_sample(self.num_examples, self.plan.sample_rate, self.sample_rng).to(self.device)

    def _train_autoencoder(self, steps: int) -> dict[str, float]:
        self.model.autoencoder.train()
        losses, sizes = [], []
        for _ in range(steps):
            idx = self._batch()
            sizes.append(len(idx))
            if len(idx) == 0:
                self.autoencoder.step(None)
                continue
            images = None if self.images is None else self.images[idx]
            clinical = None if self.clinical is None else self.clinical[idx]
            noise = torch.randn(len(idx), self.model.autoencoder.latent_dim, generator=self.sample_rng).to(self.device)
            per_sample = self.autoencoder.forward(images, clinical, self.labels[idx], noise)
            losses.append(per_sample.mean().item())
            self.autoencoder.step(per_sample.sum())
        return {"ae_loss": _mean(losses), "mean_batch_size": _mean(sizes), "steps": float(steps)}

    def _train_gan(self, steps: int) -> dict[str, float]:
        model, cfg = self.model, self.config
        with torch.no_grad():
            latents = model.autoencoder.encode(self.images, self.clinical)
        num_classes = self.schema.num_classes
        g_steps = cfg.train.generator_steps_per_round
        d_losses, g_losses, real_acc = [], [], []
        for i in range(steps):
            idx = self._batch()
            b = len(idx)
            if b == 0:
                self.discriminator.step(None)
            else:
                real, labels = latents[idx], self.labels[idx]
                with torch.no_grad():
                    fake_labels = torch.randint(num_classes, (b,), generator=self.sample_rng).to(self.device)
                    fake = model.generator(self._noise(b), fake_labels)
                # One forward pass over [real; fake]: every row is clipped on its own, and a real
                # record only ever influences its own row (the fake rows do not depend on data).
                score, logits = self.discriminator.forward(torch.cat([real, fake]), torch.cat([labels, fake_labels]))
                target = torch.cat([torch.ones(b, device=self.device), torch.zeros(b, device=self.device)])
                loss = F.binary_cross_entropy_with_logits(score, target, reduction="sum") + F.cross_entropy(
                    logits[:b], labels, reduction="sum"
                )
                d_losses.append(loss.item() / b)
                real_acc.append((logits[:b].argmax(1) == labels).float().mean().item())
                self.discriminator.step(loss)
            # Spread the generator steps evenly over the discriminator steps.
            if (i + 1) * g_steps // steps > i * g_steps // steps:
                g_losses.append(self._generator_step(max(b, 32)))
        return {
            "d_loss": _mean(d_losses),
            "g_loss": _mean(g_losses),
            "d_real_class_acc": _mean(real_acc),
            "steps": float(steps),
        }

    def _noise(self, b: int) -> torch.Tensor:
        return torch.randn(b, self.config.model.noise_dim, generator=self.sample_rng).to(self.device)

    def _generator_step(self, b: int) -> float:
        """One generator step through the discriminator; no real record is touched (post-processing)."""
        model = self.model
        labels = torch.randint(self.schema.num_classes, (b,), generator=self.sample_rng).to(self.device)
        self.discriminator.hooks(False)
        try:
            score, logits = model.discriminator(model.generator(self._noise(b), labels), labels)
            loss = F.binary_cross_entropy_with_logits(score, torch.ones_like(score))
            if self.config.train.generator_class_weight > 0:
                loss = loss + self.config.train.generator_class_weight * F.cross_entropy(logits, labels)
            self.generator_optimizer.zero_grad(set_to_none=True)
            backward(loss)
            self.generator_optimizer.step()
        finally:
            self.discriminator.zero_grad()
            self.discriminator.hooks(True)
        return loss.item()

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything the hospital keeps across rounds, as one picklable dict (tensors on CPU)."""
        return {
            "format": STATE_FORMAT,
            "hospital_id": self.hospital_id,
            "num_examples": self.num_examples,
            "rounds_done": list(self.rounds_done),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizers": {
                "autoencoder": self.autoencoder.base_optimizer.state_dict(),
                "discriminator": self.discriminator.base_optimizer.state_dict(),
                "generator": self.generator_optimizer.state_dict(),
            },
            "ledger": self.ledger.to_dict(),
            "rng": {"sample": self.sample_rng.get_state(), "noise": self.noise_rng.get_state()},
            "plan": {"sample_rate": self.plan.sample_rate, "noise_multiplier": self.plan.noise_multiplier},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved; the hospital must be built from the same data/config."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"hospital state format {state.get('format')} is not {STATE_FORMAT}")
        if state["hospital_id"] != self.hospital_id or state["num_examples"] != self.num_examples:
            raise ValueError(
                f"saved state belongs to hospital {state['hospital_id']} with {state['num_examples']} records, "
                f"not hospital {self.hospital_id} with {self.num_examples}"
            )
        self.model.load_state_dict(state["model"])
        self.autoencoder.base_optimizer.load_state_dict(state["optimizers"]["autoencoder"])
        self.discriminator.base_optimizer.load_state_dict(state["optimizers"]["discriminator"])
        self.generator_optimizer.load_state_dict(state["optimizers"]["generator"])
        self.ledger = PrivacyLedger.from_dict(state["ledger"])
        self.rounds_done = list(state["rounds_done"])
        self.sample_rng.set_state(state["rng"]["sample"])
        self.noise_rng.set_state(state["rng"]["noise"])


def _mean(values: list[float] | list[int]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")
