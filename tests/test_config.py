"""The typed configuration: defaults, overrides, errors that name the key, Flower's flat form."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from flwr.common.config import flatten_dict

from fedsynth.config import RunConfig, dumps_toml, from_flat, load_config, to_flat
from fedsynth.errors import ConfigError
from fedsynth.flower.server import RESUME_KEY

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_flower_defaults_equal_the_dataclass_defaults() -> None:
    """`flwr run .` reads [tool.flwr.app.config]; it must say what `fedsynth simulate` does."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    flower_view = flatten_dict(project["tool"]["flwr"]["app"]["config"])
    assert flower_view.pop(RESUME_KEY) is False  # the ServerApp's own switch, not part of a run's config
    assert flower_view == to_flat(RunConfig())
    assert from_flat(flower_view) == RunConfig()


def test_overrides_and_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, ["train.batch_size=32", "privacy.enabled=false", 'federation.strategy="ring"', "seed=7"])
    assert (cfg.train.batch_size, cfg.privacy.enabled, cfg.federation.strategy, cfg.seed) == (32, False, "ring", 7)
    path = tmp_path / "c.toml"
    path.write_text(dumps_toml(cfg))
    assert load_config(path) == cfg
    assert from_flat(to_flat(cfg)) == cfg
    # A bare word is taken as a string.
    assert load_config(None, ["federation.strategy=ring"]).federation.strategy == "ring"


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("train.batch_sise=3", "unknown configuration key 'train.batch_sise'"),
        ("train.batch_size=0", "train.batch_size = 0: expected a positive integer"),
        ("train.batch_size=1.5", "train.batch_size = 1.5: expected an integer"),
        ("privacy.delta=2", "privacy.delta"),
        ('privacy.accountant="gdp"', "privacy.accountant"),
        ("federation.min_hospitals=9", "federation.min_hospitals"),
        ('data.source="mnist"', "data.source"),
        ("nonsense", "expected KEY=VALUE"),
    ],
)
def test_bad_values_name_the_key(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        load_config(None, [override])


def test_bad_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nx=1")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="missing.toml: configuration file not found"):
        load_config(tmp_path / "missing.toml")
