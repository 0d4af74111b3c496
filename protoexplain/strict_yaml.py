"""YAML for configs: safe loading that refuses a key given twice in one mapping, with errors
of one line.

PyYAML keeps the last value of a repeated key without a word, so a config that sets
``epochs`` twice silently trains with the second. :class:`StrictLoader` refuses it, naming the
key and both lines. Every YAML error becomes a :class:`~protoexplain.config_schema.ConfigError`
of one line naming the source (a file, or a ``--set`` override) and the line and column.
"""

from __future__ import annotations

from typing import Any

import yaml

from protoexplain.config_schema import ConfigError

__all__ = ["StrictLoader", "load_yaml"]


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping gives one key twice."""


class StrictLoader(yaml.SafeLoader):
    """:class:`yaml.SafeLoader` that raises :class:`DuplicateKeyError` on a repeated key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                earlier = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if earlier is not None:
                first, second = earlier.start_mark.line + 1, key_node.start_mark.line + 1
                where = f"lines {first} and {second}" if first != second else f"line {first}"
                raise DuplicateKeyError(None, None, f"key '{key}' is given twice ({where}); "
                                        "remove one", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def describe_yaml_error(error: yaml.YAMLError) -> str:
    """One line: what is wrong and where (line and column), without PyYAML's excerpt."""
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    if problem is None:
        return " ".join(str(error).split())
    context = getattr(error, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    text = f"{where}{problem}" + (f" ({context})" if context else "")
    return " ".join(text.split())


def load_yaml(text: str, source: str) -> Any:
    """Parse ``text`` with :class:`StrictLoader`; a YAML error is a ConfigError naming
    ``source`` (``config file run.yaml``, ``override 'a.b=[1'``)."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as error:
        raise ConfigError(f"{source}: {error.problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} is not valid YAML: {describe_yaml_error(error)}") from None
