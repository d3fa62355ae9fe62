"""Evaluation of synthetic data: fidelity, utility, privacy, memorization, and the HTML report.

One concept per module; every metric is a pure function of arrays or :class:`Dataset` objects:

- :mod:`~fedsynth.evaluation.utility`: train-on-synthetic / test-on-real classifiers.
- :mod:`~fedsynth.evaluation.sample_size`: what the console and the report show instead of a
  score computed on a test split too small to stand as a headline.
- :mod:`~fedsynth.evaluation.features`: the embedding spaces the distance metrics work in.
- :mod:`~fedsynth.evaluation.fidelity`: Frechet distance, precision/recall/density/coverage.
- :mod:`~fedsynth.evaluation.tabular`: per-column marginals and correlation matrices.
- :mod:`~fedsynth.evaluation.associations`: cross-modal (clinical <-> image) association fidelity.
- :mod:`~fedsynth.evaluation.memorization`: maximum Pearson correlation to training images.
- :mod:`~fedsynth.evaluation.privacy`: distance to closest record, membership inference,
  Reality and Diversity Guarantees.
- :mod:`~fedsynth.evaluation.embedding`: 2-D views of real vs synthetic data.
- :mod:`~fedsynth.evaluation.neighbours`: exact chunked Euclidean nearest neighbours (shared).
- :mod:`~fedsynth.evaluation.run`: reading a run folder (real data re-derived from config.toml).
- :mod:`~fedsynth.evaluation.report` / :mod:`~fedsynth.evaluation.compare`: run evaluation,
  evaluation.json, report.html (all in the run's audit folder DIR/audit/) and cross-run
  comparison; :mod:`~fedsynth.evaluation.page` and :mod:`~fedsynth.evaluation.plots` build the
  self-contained HTML and its embedded figures.
- :mod:`~fedsynth.evaluation.audit`: what the report's outputs hold (real records, no DP) and the
  notices they carry; :mod:`~fedsynth.evaluation.budget`: the privacy budget and guarantee level
  the report states, from privacy.json and :mod:`fedsynth.privacy.label`.
"""
