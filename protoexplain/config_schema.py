"""Typed config trees: dataclasses built from nested dicts with strict key and type checks.

A config file is a tree of mappings. :func:`build` turns one into a tree of dataclasses,
rejecting unknown keys and values of the wrong type with a message that names the dotted key
and the file it came from, so a typo never silently falls back to a default.

What a value must satisfy beyond its type (a range, a length, a set of choices) is a
:class:`Rule` in the field's metadata (``field(default=..., metadata=rule(minimum=1))``), so
that every such rule of a config lives beside its field and :func:`build` checks it, with a
message naming the key, the file and the allowed values. A rule also says whether the field
may change when a run is resumed (:func:`may_change_on_resume`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union

T = TypeVar("T")

RULE = "protoexplain.rule"
"""The metadata key of a field's :class:`Rule`."""


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key and source."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a config value must satisfy beyond its type; ``None`` values (of optional
    fields) are not checked."""

    minimum: float | None = None
    """Numbers: the smallest value allowed."""
    above: float | None = None
    """Numbers: the value must be larger than this."""
    length: int | None = None
    """Lists: exactly this many items."""
    items: Rule | None = None
    """Lists: the rule of every item."""
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    """The allowed values (or a function giving them, read when a value is checked)."""
    check: Callable[[Any], str | None] | None = None
    """A function that says why a value is refused (``must be ...``), or None when it is
    fine: for rules a range or a list cannot state."""
    fields: Mapping[str, Rule] | None = None
    """A nested dataclass defined outside the config (e.g. the learning rates): the rules of
    its fields by name."""
    every: Rule | None = None
    """A nested dataclass: the rule of each of its number fields that ``fields`` does not
    name."""
    may_change_on_resume: bool = False
    """The field (for a section: everything in it) may differ when a run is resumed: it
    changes where or how the run computes or what is measured after training, not what is
    trained."""

    def problem(self, value: Any) -> str | None:
        """Why ``value`` breaks this rule (``must be >= 1``), or None."""
        if value is None:
            return None
        if self.choices is not None:
            choices = self.choices() if callable(self.choices) else self.choices
            if value not in choices:
                return f"must be one of {', '.join(map(str, choices))}"
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if is_number and self.minimum is not None and not value >= self.minimum:
            return f"must be >= {self.minimum}"
        if is_number and self.above is not None and not value > self.above:
            return f"must be > {self.above}"
        if self.length is not None and isinstance(value, (list, tuple)) \
                and len(value) != self.length:
            return f"needs {self.length} values"
        if self.check is not None:
            return self.check(value)
        return None


def rule(**options: Any) -> dict[str, Rule]:
    """Field metadata holding a :class:`Rule`: ``field(default=80, metadata=rule(minimum=1))``."""
    return {RULE: Rule(**options)}


def _rule_of(field: dataclasses.Field) -> Rule | None:
    return field.metadata.get(RULE)


def _check_rule(value: Any, found: Rule | None, key: str, source: str | Path | None) -> None:
    """Raise a ConfigError naming ``key`` when ``value`` breaks ``found`` (or, for a list, its
    item rule; for a nested dataclass, its field rules)."""
    if found is None:
        return
    reason = found.problem(value)
    if reason is not None:
        raise ConfigError(f"'{key}'{_describe(source)}: {reason}, got {value!r}")
    if found.items is not None and isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_rule(item, found.items, f"{key}[{index}]", source)
    if (found.fields or found.every) and dataclasses.is_dataclass(value):
        named = found.fields or {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            is_number = isinstance(item, (int, float)) and not isinstance(item, bool)
            chosen = named.get(field.name, found.every if is_number else None)
            _check_rule(item, chosen, f"{key}.{field.name}", source)


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
        _check_rule(values[key], _rule_of(fields[key]), dotted, source)
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


def differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every leaf where two plain config trees (as
    :func:`to_dict` gives) differ; a key present in one tree only counts as a difference."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in [*old, *(k for k in new if k not in old)]:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            found += differences(old.get(key), new.get(key), dotted)
        return found
    return [] if old == new else [(prefix, old, new)]


def may_change_on_resume(cls: type, key: str) -> bool:
    """Whether the dotted ``key`` of config dataclass ``cls`` lies in a field whose rule has
    ``may_change_on_resume`` (a section's rule covers every key inside it)."""
    for part in key.split("."):
        if not dataclasses.is_dataclass(cls):
            return False
        field = next((f for f in dataclasses.fields(cls) if f.name == part), None)
        if field is None:
            return False
        found = _rule_of(field)
        if found is not None and found.may_change_on_resume:
            return True
        cls = typing.get_type_hints(cls).get(part)
    return False
