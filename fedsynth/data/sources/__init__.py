"""Registry of data sources by name (``data.source``), each loading a pooled ``Dataset``.

A loader takes the ``DataConfig`` and a seed and returns the whole pool with its ``Schema``;
fedsynth then draws its own held-out test split and hospital partitions from it
(``fedsynth.data.federated``). User sources ignore the seed. The phantom's pool entry renders every
record with the reference scanner; federated runs render the phantom per hospital instead.

To add a source: write ``load_x(cfg, seed) -> Dataset`` and call ``register_source("x", load_x)``
(and add the name to ``DataConfig.source``'s Literal).
"""

from __future__ import annotations

from collections.abc import Callable

from fedsynth.data.config import DataConfig
from fedsynth.data.phantom import make_phantom
from fedsynth.data.records import Dataset
from fedsynth.data.sources.breast_cancer import load_breast_cancer
from fedsynth.data.sources.dicom import load_dicom
from fedsynth.data.sources.folder import load_folder
from fedsynth.data.sources.npz import load_npz
from fedsynth.errors import ConfigError

Loader = Callable[[DataConfig, int], Dataset]


def _phantom_pool(cfg: DataConfig, seed: int) -> Dataset:
    return make_phantom(cfg.phantom_records, cfg.phantom_classes, cfg.image_size, seed)


SOURCES: dict[str, Loader] = {
    "phantom": _phantom_pool,
    "npz": lambda cfg, seed: load_npz(cfg),
    "folder": lambda cfg, seed: load_folder(cfg),
    "dicom": lambda cfg, seed: load_dicom(cfg),
    "breast_cancer": lambda cfg, seed: load_breast_cancer(cfg),
}


def register_source(name: str, loader: Loader) -> None:
    """Add a loader under ``name`` (an existing name is an error)."""
    if name in SOURCES:
        raise ConfigError(f"data source {name!r} is already registered")
    SOURCES[name] = loader


def load_source(cfg: DataConfig, seed: int = 0) -> Dataset:
    """The pooled data set of ``cfg.source``."""
    loader = SOURCES.get(cfg.source)
    if loader is None:
        raise ConfigError(f"data.source: {cfg.source!r} (expected one of {sorted(SOURCES)})")
    return loader(cfg, seed)


__all__ = [
    "SOURCES",
    "Loader",
    "load_breast_cancer",
    "load_dicom",
    "load_folder",
    "load_npz",
    "load_source",
    "register_source",
]
