"""Which test images a study shows: per task, images spread evenly over the model's
confidence strata; for the agreement task half correct and half incorrect predictions; then
practice images and attention-check images, none of them shown twice.

A stratum is a quantile band of the model's confidence (its softmax probability of the
predicted class) over the whole test set: with 3 strata, the least confident third, the middle
third and the most confident third. Images are taken from the strata in turn (lowest first),
each stratum in a seeded random order, so that every stratum is equally represented as far as
it has images. A task's images are then ordered so that the blocks of the Latin square get
the strata, and correct and incorrect predictions, in equal shares (:func:`block_order`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protoexplain.config_schema import ConfigError
from protoexplain.report.analysis import Predictions
from protoexplain.study.config import StudyConfig


@dataclass(frozen=True)
class Selected:
    """One chosen test image: its index in the test split and its confidence stratum
    (0: least confident)."""

    index: int
    stratum: int


@dataclass
class Selection:
    """The chosen images: main trials per task, practice images per task, attention-check
    images, and the stratum edges (confidence quantiles)."""

    main: dict[str, list[Selected]]
    practice: dict[str, list[Selected]]
    attention: list[Selected]
    edges: list[float]


def confidence_strata(confidence: np.ndarray, strata: int) -> tuple[np.ndarray, np.ndarray]:
    """The stratum of each confidence (N,) and the inner edges (strata - 1,): the
    ``k / strata`` quantiles."""
    edges = np.quantile(confidence, np.arange(1, strata) / strata) if strata > 1 \
        else np.zeros(0)
    return np.searchsorted(edges, confidence, side="right"), edges


def _round_robin(pool: list[np.ndarray], count: int) -> list[int]:
    """Take ``count`` items from the strata's queues in turn, skipping empty ones."""
    taken: list[int] = []
    cursors = [0] * len(pool)
    while len(taken) < count and any(c < len(q) for c, q in zip(cursors, pool, strict=True)):
        for s, queue in enumerate(pool):
            if len(taken) < count and cursors[s] < len(queue):
                taken.append(int(queue[cursors[s]]))
                cursors[s] += 1
    return taken


def block_order(selected: list[Selected], blocks: int) -> list[Selected]:
    """``selected`` (already ordered by kind, e.g. correct then incorrect predictions) ordered
    by stratum within each kind and then dealt like cards in a snake: image ``q`` of a task
    goes to Latin-square block ``q mod blocks`` (:mod:`protoexplain.study.counterbalance`),
    and every other round of ``blocks`` images is reversed. Every block, i.e. every
    condition a participant sees, then gets the kinds and the strata as evenly as the counts
    allow (8 agreement images over 4 blocks: one correct and one incorrect each; 6 images of
    strata 0, 0, 1, 1, 2, 2 over 3 blocks: strata {0, 2}, {0, 2}, {1, 1})."""
    rounds = [selected[start:start + blocks] for start in range(0, len(selected), blocks)]
    return [pick for n, part in enumerate(rounds) for pick in (part[::-1] if n % 2 else part)]


def by_stratum(selected: list[Selected]) -> list[Selected]:
    """``selected`` ordered by stratum (stable)."""
    return sorted(selected, key=lambda pick: pick.stratum)


def select_images(test: Predictions, config: StudyConfig, rng: np.random.Generator
                  ) -> Selection:
    """Choose the study's images (see the module's docstring). Raises a ConfigError saying
    how many images are needed when the test split is too small, or lacks the correct or
    incorrect predictions the agreement task needs."""
    if test.multi_label:
        raise ConfigError("study design needs a single-label run: the tasks ask for one "
                          "predicted class")
    confidence = test.confidence.numpy()
    correct = test.correct.numpy()
    stratum, edges = confidence_strata(confidence, config.strata)
    used = np.zeros(len(confidence), dtype=bool)
    order = rng.permutation(len(confidence))

    def queues(mask: np.ndarray) -> list[np.ndarray]:
        return [order[(stratum[order] == s) & mask[order] & ~used[order]]
                for s in range(config.strata)]

    def take(mask: np.ndarray, count: int, what: str) -> list[Selected]:
        chosen = _round_robin(queues(mask), count)
        if len(chosen) < count:
            raise ConfigError(
                f"the test split has {int((mask & ~used).sum())} unused images {what}, the study "
                f"needs {count}: lower 'trials', 'practice' or 'attention_checks' in the study "
                "config, or use a run with a larger test split")
        used[chosen] = True
        return [Selected(i, int(stratum[i])) for i in chosen]

    everything = np.ones_like(correct)
    blocks = config.blocks
    main: dict[str, list[Selected]] = {}
    for task in sorted(config.tasks, key=lambda t: t != "agreement"):  # the hardest first
        count = getattr(config.trials, task)
        if task == "agreement":
            right = take(correct, count // 2, "with a correct prediction (agreement task)")
            wrong = take(~correct, count // 2, "with an incorrect prediction (agreement task)")
            main[task] = block_order(by_stratum(right) + by_stratum(wrong), blocks)
        else:
            main[task] = block_order(by_stratum(take(everything, count,
                                                     f"for the {task} task")), blocks)
    practice = {task: take(everything, config.practice, "for practice trials")
                for task in config.tasks}
    attention = take(everything, config.attention_checks, "for attention checks")
    return Selection(main={task: main[task] for task in config.tasks}, practice=practice,
                     attention=attention, edges=[float(v) for v in edges])
