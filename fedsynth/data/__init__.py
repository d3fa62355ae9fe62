"""The data layer: record types, configuration, sources, partitioners and the federation loader.

``load_federation(cfg, num_hospitals, seed)`` is the entry point for runs; the rest is exported
for tests, evaluation and tools. ``fedsynth.data.check.check_data`` runs the same loading with
every check and size guard (``fedsynth.data.guards``) and summarizes what a run would train on.
"""

from fedsynth.data.config import DataConfig
from fedsynth.data.federated import FederatedData, clear_federation_cache, load_federation
from fedsynth.data.partition import partition, split_test
from fedsynth.data.phantom import (
    PHANTOM_ASSOCIATIONS,
    make_phantom,
    measure_associations,
    phantom_image_features,
    phantom_schema,
)
from fedsynth.data.records import ColumnSpec, Dataset, Schema
from fedsynth.data.sources import SOURCES, load_source, register_source

__all__ = [
    "PHANTOM_ASSOCIATIONS",
    "SOURCES",
    "ColumnSpec",
    "DataConfig",
    "Dataset",
    "FederatedData",
    "Schema",
    "clear_federation_cache",
    "load_federation",
    "load_source",
    "make_phantom",
    "measure_associations",
    "partition",
    "phantom_image_features",
    "phantom_schema",
    "register_source",
    "split_test",
]
