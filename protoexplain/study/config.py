"""The study design file (``protoexplain study design --config STUDY.yaml``): what a
case-based-reasoning study shows, to whom, and how many times.

A study file is YAML, read strictly like a training config (unknown keys and wrong types are
errors naming the key and the file). The shipped designs live in ``configs/studies/`` and are
found by name (``--config cbr_default``); see ``configs/studies/cbr_default.yaml`` for every
key with its meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from protoexplain.config_files import find_config
from protoexplain.config_schema import ConfigError, Rule, build, rule
from protoexplain.strict_yaml import load_yaml

TASKS = ("distinction", "agreement", "similarity")
"""HIVE's distinction and agreement tasks (Kim et al., ECCV 2022) and the similarity task of
Davoodi et al. (2023)."""
NO_EXPLANATION = "none"
"""The control condition that shows the images without any explanation."""
RANDOM_BOXES = "random"
"""The sanity-check condition: the ``random`` localization method's maps and boxes."""
DEFAULT_STUDY = "cbr_default"
"""The shipped study design used when ``--config`` is not given."""
STUDY_FOLDER = "studies"
"""The subfolder of ``configs/`` holding the shipped study designs."""


def condition_names() -> list[str]:
    """What a condition may be: :data:`NO_EXPLANATION` or a localization method's name
    (:data:`RANDOM_BOXES` is the ``random`` method)."""
    from prototypes import LOCALIZATION_METHODS

    return [NO_EXPLANATION, *LOCALIZATION_METHODS]


@dataclass
class TrialCounts:
    """Main trials per task, i.e. test images: each image is shown once to each participant,
    under one condition."""

    distinction: int = field(default=8, metadata=rule(minimum=0))
    agreement: int = field(default=8, metadata=rule(minimum=0))
    similarity: int = field(default=8, metadata=rule(minimum=0))


@dataclass
class StudyConfig:
    """A study design. See ``configs/studies/cbr_default.yaml`` for what each key means."""

    name: str = "study"
    seed: int = 0
    design: Literal["between", "within"] = "within"
    tasks: list[str] = field(default_factory=lambda: list(TASKS),
                             metadata=rule(items=Rule(choices=TASKS)))
    conditions: list[str] = field(default_factory=lambda: [NO_EXPLANATION, RANDOM_BOXES,
                                                           "upsample", "hdm"],
                                  metadata=rule(items=Rule(choices=condition_names)))
    trials: TrialCounts = field(default_factory=TrialCounts)
    practice: int = field(default=1, metadata=rule(minimum=0))
    attention_checks: int = field(default=2, metadata=rule(minimum=0))
    candidates: int = field(default=4, metadata=rule(minimum=2, check=lambda v: None if v <= 26
                                                     else "must be <= 26 (labels A to Z)"))
    evidence: int = field(default=2, metadata=rule(minimum=1))
    strata: int = field(default=3, metadata=rule(minimum=1))
    similarity_mode: Literal["pairwise", "comparative"] = "pairwise"
    tile: int = field(default=128, metadata=rule(minimum=32))

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("'tasks' must name at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"'tasks' names a task twice: {self.tasks}")
        if len(self.conditions) < 1 or len(set(self.conditions)) != len(self.conditions):
            raise ValueError(f"'conditions' must name distinct conditions, got {self.conditions}")
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ValueError(f"'name' must be letters, digits, '-' or '_', got {self.name!r}")
        if self.design == "within":
            for task in self.tasks:
                count = getattr(self.trials, task)
                if count % len(self.conditions):
                    raise ValueError(
                        f"'trials.{task}' ({count}) must be a multiple of the "
                        f"{len(self.conditions)} conditions in a within-subject design, so "
                        "that every participant sees each condition equally often")
        if sum(getattr(self.trials, task) for task in self.tasks) == 0:
            raise ValueError("'trials' gives no main trial for the tasks named in 'tasks'")
        if self.trials.agreement % 2 and "agreement" in self.tasks:
            raise ValueError(f"'trials.agreement' ({self.trials.agreement}) must be even: half "
                             "correct and half incorrect predictions")

    @property
    def blocks(self) -> int:
        """The blocks each task's images are dealt into: one per condition in a
        within-subject design (:mod:`protoexplain.study.counterbalance`), one in a
        between-subject design."""
        return len(self.conditions) if self.design == "within" else 1

    @property
    def lists(self) -> int:
        """Participant lists: one per row of the Latin square, i.e. per condition."""
        return len(self.conditions)


def load_study_config(path_or_name: str | Path | None = None) -> StudyConfig:
    """Read a study design file, or a shipped one by name (default :data:`DEFAULT_STUDY`)."""
    found = find_config(path_or_name or DEFAULT_STUDY, folder=STUDY_FOLDER)
    data = load_yaml(found.text, f"study config {found.source}")
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"study config {found.source}: expected a mapping of keys, got "
                          f"{type(data).__name__}")
    return build(StudyConfig, data, source=found.source)
