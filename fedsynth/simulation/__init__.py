"""The simulation and audit layer: the only part of fedsynth that owns (simulated) patient data.

It pools, splits and partitions the records, writes one site per simulated hospital, runs the
server over an engine, and audits the result with the held-out real records.
"""

from fedsynth.simulation.engines import simulate, simulate_in_process

__all__ = ["simulate", "simulate_in_process"]
