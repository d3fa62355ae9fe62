"""Side-by-side measurements of fedsynth against a baseline, in one run (``fedsynth bench``).

Each table gives fedsynth's figure, the baseline's figure and their ratio, measured in the same
process on the same inputs:

- :mod:`fedsynth.bench.dp_step`: one DP-SGD step of each private network against a plain
  (non-private) step and against stock Opacus, time and peak memory;
- :mod:`fedsynth.bench.communication`: the serialized bytes of real instructions and replies
  against the raw bytes of the arrays they carry, per training phase.

Nothing here is a pass/fail check: the numbers depend on the machine, and the tests only check
that the functions return finite, consistent figures (``tests/test_bench.py``).
"""
