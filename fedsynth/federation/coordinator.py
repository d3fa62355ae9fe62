"""The coordinator: drives a strategy's rounds over a transport and logs every round.

It knows neither Flower nor the topology: the strategy yields waves of instructions, the transport
delivers them, and the coordinator records per-hospital and per-round metrics (including the
serialized bytes of every message) in the run folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fedsynth.config.schema import RunConfig
from fedsynth.federation.strategy import RoundOutcome, Strategy
from fedsynth.federation.transport import Transport
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.runfolder import RunFolder


@dataclass
class FederationResult:
    """What the rounds leave behind for the final evaluation."""

    ledgers: dict[int, PrivacyLedger] = field(default_factory=dict)
    rounds_run: int = 0


class Coordinator:
    """Runs ``config.train.num_rounds`` rounds of ``strategy`` over ``transport``."""

    def __init__(
        self,
        config: RunConfig,
        strategy: Strategy,
        transport: Transport,
        run: RunFolder,
        on_round: Callable[[dict], None] | None = None,
    ) -> None:
        self.config = config
        self.strategy = strategy
        self.transport = transport
        self.run = run
        self.on_round = on_round

    def run_rounds(self) -> FederationResult:
        result = FederationResult()
        hospitals = self.transport.hospitals()
        for server_round in range(1, self.config.train.num_rounds + 1):
            self._run_round(server_round, hospitals, result)
            result.rounds_run = server_round
        return result

    def _run_round(self, server_round: int, hospitals: list[int], result: FederationResult) -> None:
        phase = self.config.train.phase_of_round(server_round)
        started = time.perf_counter()
        plan = self.strategy.run_round(server_round, phase, hospitals)
        bytes_down = bytes_up = 0
        failures: dict[int, str] = {}
        try:
            sends = next(plan)
            while True:
                exchange = self.transport.exchange(sends, timeout=self.config.federation.round_timeout)
                failures.update(exchange.failures)
                bytes_down += sum(exchange.bytes_down.values())
                bytes_up += sum(exchange.bytes_up.values())
                for reply in exchange.replies:
                    result.ledgers[reply.hospital_id] = PrivacyLedger.from_dict(reply.ledger)
                    self.run.append_metrics(
                        {
                            "kind": "hospital",
                            "round": server_round,
                            "hospital": reply.hospital_id,
                            "phase": phase,
                            "num_examples": reply.num_examples,
                            "refused": reply.refused,
                            "bytes_down": exchange.bytes_down.get(reply.hospital_id, 0),
                            "bytes_up": exchange.bytes_up.get(reply.hospital_id, 0),
                            **reply.metrics,
                        }
                    )
                sends = plan.send(exchange.replies)
        except StopIteration as stop:
            outcome: RoundOutcome = stop.value
        record = {
            "kind": "server",
            "round": server_round,
            "phase": phase,
            "strategy": self.strategy.name,
            "seconds": time.perf_counter() - started,
            "accepted": outcome.accepted,
            "refused": outcome.refused,
            "failed": failures,
            "bytes_down": bytes_down,
            "bytes_up": bytes_up,
            "max_epsilon": _max_epsilon(result.ledgers),
            **outcome.metrics,
        }
        self.run.append_metrics(record)
        if self.on_round is not None:
            self.on_round(record)


def _max_epsilon(ledgers: dict[int, PrivacyLedger]) -> float | None:
    values = [ledger.epsilon() for ledger in ledgers.values()]
    if any(v is None for v in values):
        return None
    return max((v for v in values if v is not None), default=0.0)
