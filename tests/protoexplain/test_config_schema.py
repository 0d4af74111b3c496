"""Typed config trees: strict keys and types, lossless conversions, errors naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from protoexplain.config_schema import ConfigError, build, to_dict


@dataclass
class Inner:
    rate: float = 0.1
    sizes: tuple[int, ...] = (2, 4)


@dataclass
class Outer:
    name: str = "run"
    epochs: int = 1
    mode: Literal["fast", "slow"] = "fast"
    resume: bool = False
    limit: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError("epochs must be >= 0")


def test_a_tree_builds_nested_dataclasses_with_defaults_and_converts_losslessly():
    built = build(Outer, {"epochs": 3, "inner": {"rate": "3e-3", "sizes": [8]},
                          "limit": None, "options": {"a": 1}})
    assert built == Outer(epochs=3, limit=None, options={"a": 1},
                          inner=Inner(rate=0.003, sizes=(8,)))
    assert build(Outer, {"inner": {"rate": 2}}).inner.rate == 2.0
    assert build(Outer, None) == Outer()


def test_to_dict_gives_back_plain_values_that_build_again():
    config = Outer(epochs=2, inner=Inner(sizes=(1, 2)))
    tree = to_dict(config)
    assert tree == {"name": "run", "epochs": 2, "mode": "fast", "resume": False,
                    "limit": None, "options": {}, "inner": {"rate": 0.1, "sizes": [1, 2]}}
    assert build(Outer, tree) == config


@pytest.mark.parametrize("tree, message", [
    ({"epoch": 1}, "unknown config key 'epoch' in run.yaml (did you mean 'epochs'?); "
                   "allowed here: epochs, inner, limit, mode, name, options, resume"),
    ({"inner": {"rat": 1.0}}, "unknown config key 'inner.rat' in run.yaml"),
    ({"epochs": 1.5}, "'epochs' in run.yaml: expected an integer, got 1.5"),
    ({"epochs": True}, "'epochs' in run.yaml: expected an integer, got True"),
    ({"resume": "yes"}, "'resume' in run.yaml: expected true or false, got 'yes'"),
    ({"mode": "medium"}, "'mode' in run.yaml: 'medium' is not one of 'fast', 'slow'"),
    ({"inner": {"rate": "fast"}}, "'inner.rate' in run.yaml: expected a number, got 'fast'"),
    ({"inner": {"sizes": 3}}, "'inner.sizes' in run.yaml: expected a list, got 3"),
    ({"inner": {"sizes": [1, "x"]}}, "'inner.sizes[1]' in run.yaml: expected an integer"),
    ({"options": [1]}, "'options' in run.yaml: expected a mapping, got [1]"),
    ({"inner": 5}, "'inner' in run.yaml: expected a mapping, got 5"),
    ({"limit": "many"}, "'limit' in run.yaml: expected an integer, got 'many'"),
    ({"epochs": -1}, "'the top level' in run.yaml: epochs must be >= 0"),
])
def test_a_wrong_key_or_value_is_a_config_error_naming_the_key_and_file(tree, message):
    with pytest.raises(ConfigError) as refused:
        build(Outer, tree, source="run.yaml")
    assert str(refused.value).startswith(message)
