"""Typed config trees: strict keys and types, lossless conversions, errors naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from protoexplain.config_schema import (
    ConfigError,
    Rule,
    build,
    differences,
    may_change_on_resume,
    rule,
    to_dict,
)


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


@dataclass
class Rates:
    """A section defined elsewhere, without rules of its own."""

    lr: float = 0.1
    steps: int = 5


@dataclass
class Ruled:
    count: int = field(default=1, metadata=rule(minimum=1))
    rate: float = field(default=0.5, metadata=rule(above=0))
    limit: int | None = field(default=None, metadata=rule(minimum=2))
    pair: list[float] = field(default_factory=lambda: [1.0, 2.0],
                              metadata=rule(length=2, items=Rule(above=0)))
    name: str = field(default="a", metadata=rule(choices=lambda: ["a", "b"]))
    even: int = field(default=0, metadata=rule(check=lambda v: None if v % 2 == 0 else
                                               "must be even"))
    rates: Rates = field(default_factory=Rates, metadata=rule(
        every=Rule(minimum=0), fields={"steps": Rule(minimum=1)}, may_change_on_resume=True))
    inner: Inner = field(default_factory=Inner)


@pytest.mark.parametrize("tree, message", [
    ({"count": 0}, "'count' in run.yaml: must be >= 1, got 0"),
    ({"rate": 0}, "'rate' in run.yaml: must be > 0, got 0.0"),
    ({"limit": 1}, "'limit' in run.yaml: must be >= 2, got 1"),
    ({"pair": [1.0]}, "'pair' in run.yaml: needs 2 values, got [1.0]"),
    ({"pair": [1.0, -2]}, "'pair[1]' in run.yaml: must be > 0, got -2.0"),
    ({"name": "c"}, "'name' in run.yaml: must be one of a, b, got 'c'"),
    ({"even": 3}, "'even' in run.yaml: must be even, got 3"),
    ({"rates": {"lr": -0.5}}, "'rates.lr' in run.yaml: must be >= 0, got -0.5"),
    ({"rates": {"steps": 0}}, "'rates.steps' in run.yaml: must be >= 1, got 0"),
])
def test_field_rules_name_the_key_and_the_allowed_values(tree, message):
    with pytest.raises(ConfigError) as refused:
        build(Ruled, tree, source="run.yaml")
    assert str(refused.value) == message


def test_values_within_the_rules_and_unset_optional_values_build():
    built = build(Ruled, {"count": 3, "rate": 1e-9, "limit": None, "pair": [3, 4],
                          "name": "b", "even": 4, "rates": {"lr": 0, "steps": 1}})
    assert (built.count, built.pair, built.rates) == (3, [3.0, 4.0], Rates(lr=0.0, steps=1))


def test_differences_list_every_changed_leaf_and_what_may_change_on_resume():
    old = to_dict(Ruled())
    new = to_dict(Ruled(count=2, rates=Rates(lr=0.2), inner=Inner(rate=0.3)))
    new["extra"] = {"a": 1}
    assert differences(old, new) == [("count", 1, 2), ("rates.lr", 0.1, 0.2),
                                     ("inner.rate", 0.1, 0.3), ("extra", None, {"a": 1})]
    assert differences(old, to_dict(Ruled())) == []
    assert may_change_on_resume(Ruled, "rates.lr") and may_change_on_resume(Ruled, "rates")
    assert not may_change_on_resume(Ruled, "count")
    assert not may_change_on_resume(Ruled, "inner.rate")
    assert not may_change_on_resume(Ruled, "nosuch.key")
