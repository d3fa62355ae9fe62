"""One hospital's training for one run: its records, the generator, the DP-SGD networks, kept across
rounds.

The hospital is a library object: given a :class:`RoundInstruction` and the randomness of the
mechanism run it trains the round's phase and returns the trained weights plus the metrics that
stay on the site (losses on real records). The site service decides whether it may train at all,
charges the ledger and builds the reply; the Flower ClientApp and the in-process engine only carry
messages. Its whole state saves and restores as one dict (:meth:`state_dict`).

What one record can change (the accounting assumes exactly this; tests measure it):

- autoencoder step: the record's own row of the batch, clipped to C;
- discriminator step: the record's real latent and one fake latent drawn for it form *one* row
  (shape (b, 2, d)), so their gradients are summed before clipping and the pair is clipped to C
  as one contribution. Adding a record adds one clipped row, whatever weights the server sent;
- generator steps use a fixed, public batch size (never the size of a Poisson batch) and touch
  no real record: post-processing of the discriminator.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from fedsynth.aggregation import merge_window
from fedsynth.data.records import Dataset
from fedsynth.hospital.plan import PrivacyPlan, local_steps
from fedsynth.models.architectures import build_architecture
from fedsynth.models.gaussian import GAUSSIAN_PHASES, PHASE_MODULE, phase_sensitivity
from fedsynth.models.generator import phase_arrays
from fedsynth.privacy.dpsgd import DPNetwork, backward
from fedsynth.privacy.randomness import MechanismRandomness
from fedsynth.protocol import Arrays, Job, RoundInstruction

STATE_FORMAT = 2


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Hospital:
    """A hospital's models and DP engines for one run (see the module docstring)."""

    def __init__(
        self, hospital_id: int, data: Dataset, job: Job, plan: PrivacyPlan, device: torch.device | str = "cpu"
    ) -> None:
        if len(data) == 0:
            raise ValueError(f"hospital {hospital_id} has no records")
        self.hospital_id = hospital_id
        self.job = job
        self.plan = plan
        self.device = torch.device(device)
        self.schema = data.schema
        self.num_examples = len(data)
        self.rounds_done: list[int] = []
        #: Fixed-size sampling only (non-private runs): the current pass over the records.
        self.epoch_order: torch.Tensor | None = None
        self.epoch_cursor = 0
        #: Sealed ring: the newest round of each sender's model this hospital merged (replay check).
        self.ring_accepted: dict[int, int] = {}

        # Data stays on the device for the whole run.
        self.images = None if data.images is None else torch.tensor(data.images, device=self.device)
        self.clinical = None if data.clinical is None else torch.tensor(data.clinical, device=self.device)
        self.labels = torch.tensor(data.labels, device=self.device)

        self.model = build_architecture(
            job.architecture, self.schema, job.model, job.seed, job.architecture_options
        ).to(self.device)
        t = job.train
        common = dict(
            private=plan.private,
            noise_multiplier=plan.noise_multiplier,
            max_grad_norm=plan.max_grad_norm,
            expected_batch_size=plan.normalizer,
            optimizer=t.optimizer,
            engine=t.dp_engine,
        )
        self.autoencoder = DPNetwork(self.model.autoencoder, lr=t.lr_autoencoder, betas=(0.9, 0.999), **common)
        self.discriminator = DPNetwork(self.model.discriminator, lr=t.lr_discriminator, **common)
        self.generator_optimizer = torch.optim.Adam(
            self.model.generator.parameters(), lr=t.lr_generator, betas=(0.5, 0.999)
        )

    # -- one round -----------------------------------------------------------------------------
    def train_round(self, instruction: RoundInstruction, randomness: MechanismRandomness) -> tuple[Arrays, dict]:
        """Load the received weights, train the round's phase; (weights to send, site-only metrics)."""
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
        steps = local_steps(self.job.train, phase)
        for net in (self.autoencoder, self.discriminator):
            net.use_randomness(randomness)
        if phase == "autoencoder":
            metrics = self._train_autoencoder(steps, randomness)
        elif phase == "gan":
            metrics = self._train_gan(steps, randomness)
        elif phase in GAUSSIAN_PHASES:
            metrics = self._release(phase, randomness)
        else:
            raise ValueError(f"unknown training phase '{phase}' (expected 'autoencoder', 'gan' or {GAUSSIAN_PHASES})")
        self.rounds_done.append(instruction.server_round)
        all_weights = self.model.weights()
        weights = {k: all_weights[k] for k in phase_arrays(all_weights, phase)}
        return weights, metrics

    def _batch(self, randomness: MechanismRandomness) -> torch.Tensor:
        """A Poisson batch (what the accounting assumes); fixed-size batches only without DP."""
        if self.job.train.sampling == "fixed":
            if self.plan.private:  # resolve_plan refuses this; never train it
                raise ValueError(
                    "train.sampling = 'fixed' is for non-private runs: DP accounting assumes Poisson batches"
                )
            return self._next_fixed_batch(randomness).to(self.device)
        return randomness.poisson_indices(self.num_examples, self.plan.sample_rate).to(self.device)

    def _next_fixed_batch(self, randomness: MechanismRandomness) -> torch.Tensor:
        """The next ``batch_size`` records of a shuffled pass over the data (epochs, as in plain
        minibatch SGD); the order and position are part of the hospital's saved state."""
        size = min(self.job.train.batch_size, self.num_examples)
        if self.epoch_order is None or self.epoch_cursor + size > self.num_examples:
            self.epoch_order = torch.randperm(self.num_examples, generator=randomness.aux)
            self.epoch_cursor = 0
        batch = self.epoch_order[self.epoch_cursor : self.epoch_cursor + size]
        self.epoch_cursor += size
        return batch

    def _train_autoencoder(self, steps: int, randomness: MechanismRandomness) -> dict[str, float]:
        self.model.autoencoder.train()
        losses, sizes = [], []
        for _ in range(steps):
            idx = self._batch(randomness)
            sizes.append(len(idx))
            if len(idx) == 0:
                self.autoencoder.step(None)
                continue
            images = None if self.images is None else self.images[idx]
            clinical = None if self.clinical is None else self.clinical[idx]
            noise = torch.randn(len(idx), self.model.autoencoder.latent_dim, generator=randomness.aux).to(self.device)
            per_sample = self.autoencoder.forward(images, clinical, self.labels[idx], noise)
            losses.append(per_sample.mean().item())
            self.autoencoder.step(per_sample.sum())
        return {"ae_loss": _mean(losses), "mean_batch_size": _mean(sizes), "steps": float(steps)}

    @torch.no_grad()
    def _release(self, phase: str, randomness: MechanismRandomness) -> dict[str, float]:
        """One release of the Gaussian latent model: the phase's sums over every record, plus
        N(0, (sigma / s)^2) per coordinate where s is the phase's sensitivity (see
        :mod:`fedsynth.models.gaussian`); the sums replace the phase's buffers."""
        model = self.model.gaussian
        if model is None:
            raise ValueError(f"phase {phase!r} needs model.latent_model = 'gaussian'")
        images = None if self.images is None else self.images.cpu()
        clinical = None if self.clinical is None else self.clinical.cpu()
        labels = self.labels.cpu()
        if phase == "image-mean":
            assert images is not None
            sums = {"sums": model.mean_contributions(images, labels)}
        elif phase == "image-basis":
            assert images is not None
            sums = model.basis_contributions(images, labels)
        else:
            sums = model.moment_contributions(images, clinical, labels)
        std = self.plan.noise_multiplier / phase_sensitivity(self.job.train, phase) if self.plan.private else 0.0

        module = getattr(model, PHASE_MODULE[phase])
        for name, total in sums.items():
            noisy = total + randomness.gaussian(total, std) if std > 0 else total
            getattr(module, name).copy_(noisy.to(torch.float32))
        return {"noise_std": std, "values_released": float(sum(t.numel() for t in sums.values()))}

    def encode_all(self) -> torch.Tensor:
        """The latent codes of every record under the current (global) autoencoder."""
        with torch.no_grad():
            return self.model.autoencoder.encode(self.images, self.clinical)

    def discriminator_loss(
        self, real: torch.Tensor, labels: torch.Tensor, fake: torch.Tensor, fake_labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The summed per-record loss of one discriminator step, and the class logits of the real rows.

        Row i holds record i's real latent and the fake latent drawn for it, so Opacus computes one
        per-sample gradient for the pair and clips the pair to C as one contribution.
        """
        return paired_discriminator_loss(self.discriminator.forward, real, labels, fake, fake_labels)

    def _train_gan(self, steps: int, randomness: MechanismRandomness) -> dict[str, float]:
        model, train = self.model, self.job.train
        latents = self.encode_all()
        num_classes = self.schema.num_classes
        g_steps = train.generator_steps_per_round
        d_losses, g_losses, real_acc = [], [], []
        for i in range(steps):
            idx = self._batch(randomness)
            b = len(idx)
            if b == 0:
                self.discriminator.step(None)
            else:
                real, labels = latents[idx], self.labels[idx]
                with torch.no_grad():
                    fake_labels = torch.randint(num_classes, (b,), generator=randomness.aux).to(self.device)
                    fake = model.generator(self._noise(b, randomness), fake_labels)
                loss, logits = self.discriminator_loss(real, labels, fake, fake_labels)
                d_losses.append(loss.item() / b)
                real_acc.append((logits.argmax(1) == labels).float().mean().item())
                self.discriminator.step(loss)
            # Spread the generator steps evenly over the discriminator steps.
            if (i + 1) * g_steps // steps > i * g_steps // steps:
                g_losses.append(self._generator_step(train.batch_size, randomness))
        return {
            "d_loss": _mean(d_losses),
            "g_loss": _mean(g_losses),
            "d_real_class_acc": _mean(real_acc),
            "steps": float(steps),
        }

    def _noise(self, b: int, randomness: MechanismRandomness) -> torch.Tensor:
        return torch.randn(b, self.job.model.noise_dim, generator=randomness.aux).to(self.device)

    def _generator_step(self, b: int, randomness: MechanismRandomness) -> float:
        """One generator step through the discriminator; no real record is touched (post-processing)."""
        model = self.model
        labels = torch.randint(self.schema.num_classes, (b,), generator=randomness.aux).to(self.device)
        self.discriminator.hooks(False)
        try:
            score, logits = model.discriminator(model.generator(self._noise(b, randomness), labels), labels)
            loss = F.binary_cross_entropy_with_logits(score, torch.ones_like(score))
            if self.job.train.generator_class_weight > 0:
                loss = loss + self.job.train.generator_class_weight * F.cross_entropy(logits, labels)
            self.generator_optimizer.zero_grad(set_to_none=True)
            backward(loss)
            self.generator_optimizer.step()
        finally:
            self.discriminator.zero_grad()
            self.discriminator.hooks(True)
        return loss.item()

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything the hospital keeps across rounds of a run, as one picklable dict (tensors on
        CPU). No randomness is saved: a restored hospital draws fresh noise."""
        return {
            "format": STATE_FORMAT,
            "hospital_id": self.hospital_id,
            "run": self.job.run_id,
            "num_examples": self.num_examples,
            "rounds_done": list(self.rounds_done),
            "ring_accepted": dict(self.ring_accepted),
            "epoch": None if self.epoch_order is None else (self.epoch_order.tolist(), self.epoch_cursor),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizers": {
                "autoencoder": self.autoencoder.base_optimizer.state_dict(),
                "discriminator": self.discriminator.base_optimizer.state_dict(),
                "generator": self.generator_optimizer.state_dict(),
            },
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved; the hospital must be built from the same data/job."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"hospital state format {state.get('format')} is not {STATE_FORMAT}")
        mine = (self.hospital_id, self.num_examples, self.job.run_id)
        theirs = (state["hospital_id"], state["num_examples"], state["run"])
        if theirs != mine:
            raise ValueError(
                f"saved state belongs to hospital {theirs[0]} with {theirs[1]} records in run {theirs[2]}, "
                f"not hospital {mine[0]} with {mine[1]} in run {mine[2]}"
            )
        self.model.load_state_dict(state["model"])
        self.autoencoder.base_optimizer.load_state_dict(state["optimizers"]["autoencoder"])
        self.discriminator.base_optimizer.load_state_dict(state["optimizers"]["discriminator"])
        self.generator_optimizer.load_state_dict(state["optimizers"]["generator"])
        self.rounds_done = list(state["rounds_done"])
        self.ring_accepted = {int(k): int(v) for k, v in state.get("ring_accepted", {}).items()}
        epoch = state.get("epoch")
        if epoch is not None:
            self.epoch_order, self.epoch_cursor = torch.tensor(epoch[0]), int(epoch[1])


def paired_discriminator_loss(
    discriminator: torch.nn.Module,
    real: torch.Tensor,
    labels: torch.Tensor,
    fake: torch.Tensor,
    fake_labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The discriminator step's summed loss over (b, 2, d) rows (a record's real latent with the fake
    latent drawn for it), and the class logits of the real rows; ``discriminator`` is the module
    the step calls (Opacus' wrapper when private). Shared by :class:`Hospital` and the benchmarks."""
    b = real.shape[0]
    pairs = torch.stack([real, fake], dim=1)  # (b, 2, d)
    pair_labels = torch.stack([labels, fake_labels], dim=1)  # (b, 2)
    score, logits = discriminator(pairs, pair_labels)  # (b, 2), (b, 2, classes)
    target = torch.stack([torch.ones(b, device=real.device), torch.zeros(b, device=real.device)], dim=1)
    loss = F.binary_cross_entropy_with_logits(score, target, reduction="sum") + F.cross_entropy(
        logits[:, 0], labels, reduction="sum"
    )
    return loss, logits[:, 0].detach()


def _mean(values: list[float] | list[int]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")
