"""Typed config trees: dataclasses built from nested dicts with strict key and type checks.

A config file is a tree of mappings. :func:`build` turns one into a tree of dataclasses,
rejecting unknown keys and values of the wrong type with a message that names the dotted key
and the file it came from, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key and source."""


def _describe(source: str | Path | None) -> str:
    return f" in {source}" if source else ""


def _closest(name: str, options: typing.Iterable[str]) -> str:
    import difflib

    match = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _coerce(value: Any, annotation: Any, key: str, source: str | Path | None) -> Any:
    """Check ``value`` against a type annotation, converting where it is lossless."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, source)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else
                          f"'{key}'{_describe(source)}: {value!r} does not fit {annotation}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"'{key}'{_describe(source)}: {value!r} is not one of "
                              f"{', '.join(repr(a) for a in args)}")
        return value
    if dataclasses.is_dataclass(annotation):
        return build(annotation, value, source=source, prefix=key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{key}'{_describe(source)}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}'{_describe(source)}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{key}'{_describe(source)}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{key}'{_describe(source)}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{key}'{_describe(source)}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{key}'{_describe(source)}: expected a string, got {value!r}")
        return value
    return value


def build(cls: type[T], data: Any, *, source: str | Path | None = None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; every key must be a field of ``cls``.

    Missing keys take the field's default. ``prefix`` is the dotted path of ``data`` inside
    the whole config, used in error messages.
    """
    where = prefix or "the top level"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"'{where}'{_describe(source)}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(f"unknown config key '{dotted}'{_describe(source)}"
                              f"{_closest(str(key), fields)}; allowed here: "
                              f"{', '.join(sorted(fields))}")
        values[key] = _coerce(value, hints[key], dotted, source)
    try:
        return cls(**values)
    except ValueError as error:  # a dataclass's own check of its values
        raise ConfigError(f"'{where}'{_describe(source)}: {error}") from None


def to_dict(config: Any) -> Any:
    """A plain nested dict/list version of a dataclass tree, for YAML and checkpoints."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    return config
