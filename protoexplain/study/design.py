"""``protoexplain study design``: blinded, counterbalanced study material from a run.

``STUDY_DIR`` holds:

- ``lists/list-N/``, one folder per participant list, all a participant needs: ``index.html``
  (the study page, self-contained: its pictures inline, works offline from ``file://``),
  ``trials.json`` and ``trials.csv`` (the trials, for other platforms), ``stimuli/*.png``;
- ``key.json`` and ``key.csv``: per trial its condition, the test image, true and predicted
  class, whether the model was right, its confidence and stratum, and the answers that match
  the model; kept by the experimenter, read by ``protoexplain study analyze``;
- ``study.json`` (the design and its id) and ``design.md`` (the design as tables).

Participant files (``lists/``) carry only trial ids and anonymous labels.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from protoexplain.config_schema import ConfigError, to_dict
from protoexplain.data.labels import class_names_of, is_multi_label
from protoexplain.factory import build_dataset, make_loader
from protoexplain.report.analysis import class_weights, predict_test_set
from protoexplain.report.build import Localizer
from protoexplain.report.site import publish
from protoexplain.run_dir import LoadedRun
from protoexplain.study.config import NO_EXPLANATION, RANDOM_BOXES, StudyConfig
from protoexplain.study.counterbalance import condition_indices
from protoexplain.study.key import KEY_FORMAT, write_key
from protoexplain.study.page import write_list
from protoexplain.study.selection import Selected, select_images
from protoexplain.study.stimuli import (
    Painter,
    agreement_picture,
    distinction_picture,
    encode_png,
    pad_to,
    similarity_picture,
)
from protoexplain.study.trials import (
    AGREEMENT,
    COMPARATIVE,
    INSTRUCTIONS,
    PAIRWISE,
    PROMPTS,
    Item,
    make_item,
    questions,
    task_style,
)

GENERATOR = "protoexplain study"


@dataclass
class Planned:
    """One trial of one list: an item, its kind (``practice``, ``main``, ``attention``) and
    the condition it is shown under."""

    item: Item
    kind: str
    condition: str


@dataclass
class StudySummary:
    """What :func:`design_study` wrote."""

    path: Path
    study_id: str
    lists: int
    trials_per_list: int


@torch.no_grad()
def _forward(run: LoadedRun, images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarities (N, P) and logits (N, K) on the CPU."""
    similarities, logits = [], []
    size = run.config.data.eval_batch_size
    for start in range(0, len(images), size):
        output = run.model(torch.stack(images[start:start + size]).to(run.device))
        similarities.append(output.similarities.float().cpu())
        logits.append(output.logits.float().cpu())
    return torch.cat(similarities), torch.cat(logits)


def _items(run: LoadedRun, config: StudyConfig, test_set: Any, chosen: list[tuple[str, Selected]],
           class_names: list[str], rng: np.random.Generator) -> list[Item]:
    """The content of each (task, image) chosen, in order; positions count per task."""
    if not chosen:
        return []
    similarities, logits = _forward(run, [test_set[s.index]["image"] for _, s in chosen])
    weights = class_weights(run.model).detach().float().cpu()
    positions: dict[str, int] = {}
    items = []
    for row, (task, selected) in enumerate(chosen):
        position = positions.get(task, 0)
        positions[task] = position + 1
        items.append(make_item(
            task, selected.index, selected.stratum, similarities=similarities[row],
            logits=logits[row], weights=weights, label=int(test_set[selected.index]["label"]),
            position=position, candidates=config.candidates, evidence=config.evidence,
            comparative=config.similarity_mode == "comparative",
            blocks=config.blocks, class_names=class_names, rng=rng))
    return items


def plan_lists(config: StudyConfig, main: dict[str, list[Item]], practice: dict[str, list[Item]],
               attention: list[Item], rng: np.random.Generator) -> list[list[Planned]]:
    """The trials of each list in the order shown: per task, its practice trials, then its
    main trials in a random order with the task's attention checks at random places (never
    first). Conditions follow the Latin square (:mod:`protoexplain.study.counterbalance`);
    practice trials cycle through the list's conditions; attention checks show no
    explanation."""
    conditions = config.conditions
    lists = []
    for number in range(config.lists):
        planned: list[Planned] = []
        for task in config.tasks:
            for j, item in enumerate(practice[task]):
                index = number if config.design == "between" else (number + j) % len(conditions)
                planned.append(Planned(item, "practice", conditions[index]))
            assigned = condition_indices(len(main[task]), len(conditions), config.design)[number]
            block = [Planned(item, "main", conditions[c])
                     for item, c in zip(main[task], assigned, strict=True)]
            block = [block[i] for i in rng.permutation(len(block))]
            for item in (a for a in attention if a.task == task):
                block.insert(int(rng.integers(1, len(block) + 1)) if block else 0,
                             Planned(item, "attention", NO_EXPLANATION))
            planned += block
        lists.append(planned)
    return lists


def _attention_items(config: StudyConfig, items: list[Item], rng: np.random.Generator
                     ) -> list[Item]:
    """Attention checks: the content of a task's trial, with an answer named in the prompt
    (chosen at random among the task's answers)."""
    comparative = config.similarity_mode == "comparative"
    for item in items:
        options = questions(item.task, comparative, len(item.shown)
                            if item.task == "distinction" else config.candidates)[0]["options"]
        item.expected = [options[int(rng.integers(len(options)))]["answer"]]
    return items


def _localize(run: LoadedRun, config: StudyConfig, planned: list[list[Planned]],
              test_set: Any, push_set: Any, sources: dict[int, int], progress: bool
              ) -> tuple[dict, dict]:
    """Every method condition's maps and boxes of the shown (image, prototype) pairs, on the
    test images and on the prototypes' source images."""
    methods = [c for c in config.conditions if c != NO_EXPLANATION]
    options = run.config.localization.method_options
    chosen = {name: dict(options.get(name, {})) for name in methods}
    if RANDOM_BOXES in chosen:
        chosen[RANDOM_BOXES].setdefault("seed", config.seed)
    test_pairs, source_pairs = set(), set()
    for trials in planned:
        for trial in trials:
            if trial.condition == NO_EXPLANATION:
                continue
            for p in shown_prototypes(trial.item):
                test_pairs.add((trial.item.index, p))
                source_pairs.add((sources[p], p))
    localizer = Localizer(run.model, chosen, batch_size=run.config.data.eval_batch_size,
                          device=run.device, progress=progress)
    test_found = {pair: maps for pair, _, maps in localizer.run(
        sorted(test_pairs), test_set.__getitem__, "study: test images")}
    source_found = {pair: maps for pair, _, maps in localizer.run(
        sorted(source_pairs), push_set.__getitem__, "study: prototype sources")}
    return test_found, source_found


def shown_prototypes(item: Item) -> list[int]:
    """Every prototype an item's picture shows."""
    if item.task == "distinction":
        return [p for _, prototypes in item.shown for p in prototypes]
    return list(item.shown)


def _render(item: Item, condition: str, painter: Painter) -> np.ndarray:
    if item.task == "distinction":
        return distinction_picture(painter, item.index, item.shown, condition)
    if item.task == "agreement":
        return agreement_picture(painter, item.index, item.shown, condition)
    return similarity_picture(painter, item.index, item.shown, condition)


def design_study(run: LoadedRun, config: StudyConfig, out: str | Path, *,
                 progress: bool = True) -> StudySummary:
    """Write a study (see the module's docstring) for ``run`` as ``config`` designs it, into
    ``out``, which must not exist or be empty (nothing is overwritten)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} exists and is not empty; a study is never "
                              "overwritten: choose another folder")
    rng = np.random.default_rng(config.seed)
    push_set = build_dataset(run.config, "train", augment=False)
    test_set = build_dataset(run.config, "test", augment=False)
    if is_multi_label(push_set):
        raise ConfigError("study design needs a single-label run: its tasks ask for one "
                          "predicted class")
    records = {record.prototype: record for record in run.records}
    missing = [p for p in range(len(run.model.prototype_classes)) if p not in records]
    if missing:
        raise ConfigError(f"run {run.path} has {len(missing)} prototypes without a source "
                          "patch (projection); a study shows each prototype's source: project "
                          "them first (e.g. import-protopnet --push)")
    class_names = class_names_of(push_set)
    test = predict_test_set(run.model, make_loader(test_set, run.config.data.eval_batch_size,
                                                   run.config),
                            multi_label=False, device=run.device, progress=progress)
    selection = select_images(test, config, rng)
    chosen = [("main", task, s) for task in config.tasks for s in selection.main[task]]
    chosen += [("practice", task, s) for task in config.tasks for s in selection.practice[task]]
    chosen += [("attention", config.tasks[n % len(config.tasks)], s)
               for n, s in enumerate(selection.attention)]
    items = _items(run, config, test_set, [(task, s) for _, task, s in chosen], class_names,
                   rng)
    kinds = [kind for kind, _, _ in chosen]
    main = {task: [i for i, k in zip(items, kinds, strict=True) if k == "main" and i.task == task]
            for task in config.tasks}
    practice = {task: [i for i, k in zip(items, kinds, strict=True)
                       if k == "practice" and i.task == task] for task in config.tasks}
    attention = _attention_items(config, [i for i, k in zip(items, kinds, strict=True)
                                          if k == "attention"], rng)
    planned = plan_lists(config, main, practice, attention, rng)
    sources = {p: record.sample_index for p, record in records.items()}
    test_found, source_found = _localize(run, config, planned, test_set, push_set, sources,
                                         progress)
    painter = Painter(lambda i: test_set[i]["image"], lambda i: push_set[i]["image"], sources,
                      test_found, source_found, config.tile)
    pictures: dict[tuple[int, str], np.ndarray] = {}
    tasks: dict[int, str] = {}
    needed = [(trial.item, trial.condition) for trials in planned for trial in trials]
    for item, condition in tqdm(needed, desc="study: stimuli", disable=not progress):
        if (id(item), condition) not in pictures:
            pictures[id(item), condition] = _render(item, condition, painter)
            tasks[id(item)] = item.task
    sizes: dict[str, tuple[int, int]] = {}
    for (item_id, _), rgb in pictures.items():
        height, width = sizes.get(tasks[item_id], (0, 0))
        sizes[tasks[item_id]] = (max(height, rgb.shape[0]), max(width, rgb.shape[1]))
    encoded = {key: encode_png(pad_to(rgb, sizes[tasks[key[0]]][1], sizes[tasks[key[0]]][0]))
               for key, rgb in pictures.items()}
    return _write(run, config, out, planned, encoded, sizes, selection.edges)


def _write(run: LoadedRun, config: StudyConfig, out: Path, planned: list[list[Planned]],
           encoded: dict, sizes: dict, edges: list[float]) -> StudySummary:
    comparative = config.similarity_mode == "comparative"
    key_rows, lists = [], []
    for number, trials in enumerate(planned, start=1):
        name = f"list-{number}"
        rows = []
        for position, trial in enumerate(trials, start=1):
            item = trial.item
            trial_id = f"L{number}-{position:03d}"
            style = task_style(item.task, comparative)
            candidates = len(item.shown) if item.task == "distinction" else config.candidates
            prompt = PROMPT_OF[trial.kind](style, item)
            asked = questions(item.task, comparative, candidates)
            rows.append({
                "trial_id": trial_id, "kind": trial.kind, "task": item.task, "prompt": prompt,
                "image": f"stimuli/{trial_id}.png", "width": sizes[item.task][1],
                "height": sizes[item.task][0],
                "questions": asked,
                "feedback": _feedback(item) if trial.kind == "practice" else None,
                "png": encoded[id(item), trial.condition]})
            key_rows.append({
                "list": name, "trial_id": trial_id, "kind": trial.kind, "task": item.task,
                "condition": trial.condition, "test_index": item.index,
                "stratum": item.stratum, "expected": item.expected,
                "answers": [option["answer"] for option in asked[0]["options"]], **item.facts})
        lists.append((name, rows))
    digest = hashlib.sha256(json.dumps([to_dict(config), key_rows], sort_keys=True,
                                       default=str).encode()).hexdigest()[:10]
    study_id = f"{config.name}-{digest}"
    staging = out.with_name(f".{out.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        for name, rows in lists:
            write_list(staging / "lists" / name, study_id, name, rows,
                       {task: INSTRUCTIONS[task_style(task, comparative)]
                        for task in config.tasks})
        write_key(staging, study_id, key_rows)
        study = {"generator": GENERATOR, "format": KEY_FORMAT, "study_id": study_id,
                 "run": str(run.path), "config": to_dict(config),
                 "lists": [name for name, _ in lists], "stimulus_sizes": {
                     task: {"width": w, "height": h} for task, (h, w) in sizes.items()},
                 "confidence_strata_edges": edges}
        (staging / "study.json").write_text(json.dumps(study, indent=2) + "\n")
        (staging / "design.md").write_text(design_table(study_id, config, key_rows))
        if out.exists():
            out.rmdir()  # empty, checked above
        publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return StudySummary(path=out, study_id=study_id, lists=len(lists),
                        trials_per_list=len(planned[0]) if planned else 0)


def _prompt(style: str, item: Item) -> str:
    return PROMPTS[style]


def _attention_prompt(style: str, item: Item) -> str:
    return (f"Attention check: whatever the picture shows, answer "
            f"'{_option_label(item)}'. ({PROMPTS[style]})")


def _option_label(item: Item) -> str:
    answer = item.expected[0]
    if item.task == "distinction":
        return f"Class {answer}"
    table = dict(AGREEMENT) if item.task == "agreement" else dict(PAIRWISE + COMPARATIVE)
    return table[answer]


def _feedback(item: Item) -> str:
    """What a practice trial tells the participant after the answer."""
    if item.task == "distinction":
        return f"The model predicted Class {item.expected[0]}."
    if item.task == "agreement":
        return ("The model's prediction was correct." if item.expected == ["3", "4"]
                else "The model's prediction was incorrect.")
    if item.expected[0] in ("left", "right"):
        return f"The model finds the {item.expected[0]} pair more alike."
    return ("The model finds these regions alike (this is the prototype most similar to the "
            "image)." if item.expected == ["yes"] else
            "The model finds these regions not alike (this is the prototype least similar "
            "to the image).")


PROMPT_OF = {"main": _prompt, "practice": _prompt, "attention": _attention_prompt}


def design_table(study_id: str, config: StudyConfig, key_rows: list[dict[str, Any]]) -> str:
    """``design.md``: main trials per list, task and condition (Markdown)."""
    counts: dict[tuple[str, str, str], int] = {}
    for row in key_rows:
        if row["kind"] == "main":
            key = (row["list"], row["task"], row["condition"])
            counts[key] = counts.get(key, 0) + 1
    lists = list(dict.fromkeys(row["list"] for row in key_rows))
    lines = [f"# Study {study_id}", "",
             f"{config.design}-subject design, {len(lists)} lists (rows of a Latin square over "
             f"the conditions), seed {config.seed}. Main trials per list, task and condition:",
             "", "| list | task | " + " | ".join(config.conditions) + " |",
             "|---|---|" + "---:|" * len(config.conditions)]
    for name in lists:
        for task in config.tasks:
            lines.append(f"| {name} | {task} | " + " | ".join(
                str(counts.get((name, task, c), 0)) for c in config.conditions) + " |")
    kinds = {kind: sum(1 for r in key_rows if r["kind"] == kind and r["list"] == lists[0])
             for kind in ("practice", "main", "attention")}
    lines += ["", f"Per list: {kinds['practice']} practice trials, {kinds['main']} main trials, "
                  f"{kinds['attention']} attention checks. Give participants only the folders "
                  "under lists/; key.json stays with the experimenter.", ""]
    return "\n".join(lines)
