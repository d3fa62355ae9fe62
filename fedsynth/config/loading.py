"""Loading, overriding, flattening and saving the run configuration.

A configuration arrives in three shapes: a nested TOML file (``--config``), ``key=value``
overrides with dotted keys (``--set train.batch_size=32``), and Flower's flat ``run_config``
(``[tool.flwr.app.config]``, dotted keys). All three go through :func:`build`, which checks every
key and type against the dataclasses of :mod:`fedsynth.config.schema` and names the offending key.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from fedsynth.config.schema import RunConfig
from fedsynth.errors import ConfigError

FlatConfig = dict[str, bool | int | float | str]


def _is_section(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert the lossless cases (int -> float)."""
    origin = get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key} = {value!r}: expected one of {list(get_args(tp))}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in get_args(tp):
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key} = {value!r}: expected {tp}")
    if origin is tuple:
        if isinstance(value, str):  # flat form: comma-separated
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} = {value!r}: expected a list")
        (item,) = get_args(tp)[:1]
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} = {value!r}: expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} = {value!r}: expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r}: expected a string")
        return value
    raise ConfigError(f"{key}: unsupported configuration type {tp}")


def _build_section(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        where = f"{prefix}{unknown[0]}"
        raise ConfigError(f"unknown configuration key '{where}' (known in this section: {sorted(known)})")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        tp = hints[name]
        key = f"{prefix}{name}"
        if _is_section(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a table [{key}]")
            kwargs[name] = _build_section(tp, value, f"{key}.")
        else:
            kwargs[name] = _coerce(value, tp, key)
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - guarded by the checks above
        raise ConfigError(f"{prefix or 'config'}: {e}") from e


def build_dataclass(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Build any configuration dataclass from nested plain data, checking every key and type;
    errors name the key as ``prefix`` + field (e.g. a site file's ``policy.max_delta``)."""
    return _build_section(cls, values, prefix)


def build(nested: dict[str, Any]) -> RunConfig:
    """Build and validate a :class:`RunConfig` from a nested dict (missing keys take defaults)."""
    return _build_section(RunConfig, nested, "")


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"configuration key '{key}' conflicts with a value at '{part}'")
        node[parts[-1]] = value
    return nested


def to_nested(config: RunConfig) -> dict[str, Any]:
    """The configuration as nested plain data (tuples as lists), ready for TOML."""

    def convert(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return {f.name: convert(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if isinstance(obj, tuple):
            return [convert(v) for v in obj]
        return obj

    return convert(config)


def to_flat(config: RunConfig) -> FlatConfig:
    """Flower's flat form: dotted keys, tuples joined by commas."""
    flat: FlatConfig = {}

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value):
                walk(value, f"{key}.")
            elif isinstance(value, tuple):
                flat[key] = ",".join(str(v) for v in value)
            else:
                flat[key] = value

    walk(config, "")
    return flat


def from_flat(flat: dict[str, Any]) -> RunConfig:
    """Build from Flower's ``context.run_config`` (dotted keys)."""
    return build(unflatten(dict(flat)))


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value``; the value is read as TOML (numbers, booleans, quoted strings, lists)
    and taken as a bare string when it is not valid TOML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected KEY=VALUE, e.g. train.batch_size=32")
    key, raw = text.split("=", 1)
    key, raw = key.strip(), raw.strip()
    if not key:
        raise ConfigError(f"override '{text}': the key is empty")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def read_toml(path: str | Path, what: str = "configuration file") -> dict[str, Any]:
    """A TOML file as nested plain data; errors name the file and what was expected."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from e


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load a TOML run configuration (or the defaults) and apply ``key=value`` overrides."""
    nested: dict[str, Any] = read_toml(path) if path is not None else {}
    flat_overrides = dict(parse_override(o) for o in overrides)
    merged = _merge(nested, unflatten(flat_overrides))
    try:
        return build(merged)
    except ConfigError as e:
        source = f"{path}" if path is not None else "defaults"
        raise ConfigError(f"{source}: {e}") from e


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def dumps_toml(config: RunConfig) -> str:
    """Serialize the resolved configuration as TOML (scalars first, then one table per section)."""
    import tomli_w

    return tomli_w.dumps(to_nested(config))


def save_config(config: RunConfig, path: str | Path) -> None:
    Path(path).write_text(dumps_toml(config))
