"""What each trial asks: the questions and answers of each task, the instructions, and the
content of an item (which classes and prototypes it shows and which answer matches the model).

An answer is *accurate* when it matches the model, which is what a case-based-reasoning
study measures (HIVE, Kim et al. ECCV 2022; Davoodi et al. 2023):

- distinction: the label of the class the model predicted;
- agreement: levels 3 or 4 (probably / definitely correct) when the prediction is correct,
  1 or 2 when it is not;
- similarity (pairwise): ``yes`` for a pair of the image and its most similar prototype,
  ``no`` for its least similar prototype; (comparative) the side of the most similar pair.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from protoexplain.report.analysis import decompose_logit

CONFIDENCE = [("1", "not confident"), ("2", "a little confident"), ("3", "fairly confident"),
              ("4", "very confident")]
AGREEMENT = [("1", "definitely incorrect"), ("2", "probably incorrect"),
             ("3", "probably correct"), ("4", "definitely correct")]
PAIRWISE = [("yes", "yes, they look alike"), ("no", "no, they do not")]
COMPARATIVE = [("left", "the left pair"), ("right", "the right pair")]

PROMPTS = {
    "distinction": "Which class did the model predict for this test image?",
    "agreement": "The model predicts the class these prototypes belong to. Is its prediction "
                 "correct?",
    "similarity": "Does the image region look like the prototype region?",
    "similarity-comparative": "In which pair do the image region and the prototype region "
                              "look more alike?",
}
INSTRUCTIONS = {
    "distinction": "Each picture shows a test image and, for several candidate classes "
                   "(Class A, Class B, ...), parts of the test image next to prototypes of "
                   "that class: the model's reasons for that class. Pick the class you think "
                   "the model predicted, then say how confident you are.",
    "agreement": "Each picture shows a test image, and the prototypes of the class the model "
                 "predicted next to the parts of the test image they match. Judge whether the "
                 "model's prediction is correct.",
    "similarity": "Each picture shows a region of a test image next to a region of a training "
                  "image (a prototype). Say whether they look alike.",
    "similarity-comparative": "Each picture shows two pairs, left and right, each a region "
                              "of a test image next to a prototype region. Pick the pair whose "
                              "regions look more alike.",
}


def labels(count: int) -> list[str]:
    """``A``, ``B``, ...: the anonymous class labels."""
    return list(string.ascii_uppercase[:count])


def task_style(task: str, comparative: bool) -> str:
    """The key of :data:`PROMPTS` and :data:`INSTRUCTIONS` for a task."""
    return "similarity-comparative" if task == "similarity" and comparative else task


def questions(task: str, comparative: bool, candidates: int) -> list[dict[str, Any]]:
    """The questions of a trial: ``choice`` (every task) and ``confidence`` (distinction),
    each with its options ``{"answer", "label"}``."""
    if task == "distinction":
        choice = [(label, f"Class {label}") for label in labels(candidates)]
    elif task == "agreement":
        choice = AGREEMENT
    else:
        choice = COMPARATIVE if comparative else PAIRWISE
    found = [{"name": "choice", "options": [{"answer": a, "label": t} for a, t in choice]}]
    if task == "distinction":
        found.append({"name": "confidence", "prompt": "How confident are you?",
                      "options": [{"answer": a, "label": t} for a, t in CONFIDENCE]})
    return found


@dataclass
class Item:
    """One test image in one task, as every condition shows it.

    ``shown``: distinction: ``[(label, [prototypes...]), ...]`` in display order; agreement:
    ``[prototypes...]``; similarity: ``[prototype]`` or ``[left, right]``. ``expected``: the
    answers that match the model. ``facts``: what the key records (true and predicted class,
    model confidence, correctness, ...)."""

    task: str
    index: int
    stratum: int
    shown: Any
    expected: list[str]
    facts: dict[str, Any] = field(default_factory=dict)


def make_item(task: str, index: int, stratum: int, *, similarities: torch.Tensor,
              logits: torch.Tensor, weights: torch.Tensor, label: int, position: int,
              candidates: int, evidence: int, comparative: bool, blocks: int,
              class_names: list[str], rng: np.random.Generator) -> Item:
    """The content of test image ``index`` (its similarities (P,) and logits (K,)) in
    ``task``. ``position`` is the image's place in its task's list: in the pairwise
    similarity task it alternates between the most and the least similar prototype from one
    round of ``blocks`` images to the next (:func:`protoexplain.study.selection.block_order`:
    each Latin-square block gets both)."""
    predicted = int(logits.argmax())
    probability = float(logits.softmax(dim=0)[predicted])
    facts = {"true_class": class_names[label], "predicted_class": class_names[predicted],
             "model_correct": predicted == label, "model_confidence": probability}

    def top(k: int) -> list[int]:
        found = decompose_logit(similarities, weights, float(logits[k]), k, evidence)
        chosen = [row["prototype"] for row in found["prototypes"]]
        return [chosen[i] for i in rng.permutation(len(chosen))]

    if task == "distinction":
        count = min(candidates, logits.shape[0])
        classes = logits.argsort(descending=True, stable=True)[:count].tolist()
        order = rng.permutation(count)
        shown_classes = [classes[i] for i in order]
        names = labels(count)
        shown = [(names[n], top(k)) for n, k in enumerate(shown_classes)]
        expected = [names[shown_classes.index(predicted)]]
        facts["candidates"] = {names[n]: class_names[k] for n, k in enumerate(shown_classes)}
        return Item(task, index, stratum, shown, expected, facts)
    if task == "agreement":
        return Item(task, index, stratum, top(predicted),
                    ["3", "4"] if predicted == label else ["1", "2"], facts)
    ranked = similarities.argsort(descending=True, stable=True).tolist()
    high, low = ranked[0], ranked[-1]
    facts["similarity"] = {str(p): float(similarities[p]) for p in (high, low)}
    if comparative:
        left_high = bool(rng.integers(2))
        return Item(task, index, stratum, [high, low] if left_high else [low, high],
                    ["left" if left_high else "right"], facts)
    alike = (position // blocks) % 2 == 0
    return Item(task, index, stratum, [high if alike else low], ["yes" if alike else "no"],
                facts)
