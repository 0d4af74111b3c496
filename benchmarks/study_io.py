"""What the benchmark scripts share: the ``--images-per-prototype`` option, the (test image,
prototype) pairs of a trained run, and publishing a report: printed, and written as
``OUT.md`` beside ``OUT.json``.

The scripts run as ``python benchmarks/NAME.py``, so this module is imported by its bare name.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from protoexplain.benchmark import has_finding_boxes
from protoexplain.cli import image_count
from protoexplain.factory import build_dataset
from protoexplain.metrics.pairs import EvaluationPairs, build_pairs
from protoexplain.run_dir import LoadedRun, load_run


def add_images_per_prototype(parser: argparse.ArgumentParser, default: int) -> None:
    """The scripts' ``--images-per-prototype``: a positive count, or 'all' (None), parsed by
    :func:`protoexplain.cli.image_count` as the CLI's benchmark does."""
    parser.add_argument(
        "--images-per-prototype",
        type=image_count,
        default=default,
        help="test images of its class per prototype, or 'all' (Huang et al.'s protocol)",
    )


@dataclass
class RunPairs:
    """A run's model in eval mode and its pairs: ``images[b]`` with prototype ``ids[b]``
    (on the run's device). ``boxed``: the data set's ground truth is labelled finding boxes
    (:func:`protoexplain.benchmark.has_finding_boxes`; XProtoNet's multi-label sets)."""

    run: LoadedRun
    model: torch.nn.Module
    pairs: EvaluationPairs
    images: torch.Tensor
    ids: torch.Tensor
    classes: torch.Tensor
    boxed: bool


def load_run_pairs(run_dir: Path, images_per_prototype: int | None) -> RunPairs:
    """``images_per_prototype`` test images of each prototype's class (all of them when None;
    with a finding box on boxed data sets), chosen with the run's seed as the benchmark
    does."""
    run = load_run(run_dir)
    model = run.model.eval()
    test = build_dataset(run.config, "test", augment=False)
    classes = model.prototype_class_identity.argmax(dim=1)
    boxed = has_finding_boxes(test)
    pairs = build_pairs(
        test,
        classes,
        images_per_class=images_per_prototype,
        seed=run.config.seed,
        require_box=boxed,
        progress=False,
    )
    images = pairs.images[pairs.rows].to(run.device)
    ids = pairs.prototypes.to(run.device)
    return RunPairs(run, model, pairs, images, ids, classes, boxed)


def publish_report(out: Path, text: str, record: Any) -> None:
    """Print ``text`` (the report's Markdown) and write it as ``OUT.md`` beside ``record`` as
    ``OUT.json`` (creating OUT's folder)."""
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    out.with_suffix(".md").write_text(text)
