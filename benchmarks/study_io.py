"""What the benchmark scripts share: the ``--images-per-prototype`` option, the (test image,
prototype) pairs of a trained run, running a ``protoexplain`` command in a child process and
comparing the results of such runs, and publishing a report: printed, and written as
``OUT.md`` beside ``OUT.json``.

The scripts run as ``python benchmarks/NAME.py``, so this module is imported by its bare name.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from protoexplain.benchmark import has_finding_boxes
from protoexplain.cli import image_count
from protoexplain.factory import build_dataset
from protoexplain.metrics.pairs import EvaluationPairs, build_pairs
from protoexplain.run_dir import LoadedRun, load_run

ROOT = Path(__file__).resolve().parent.parent
"""The repository, where child processes run with it on their ``PYTHONPATH``."""


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


def protoexplain_command(command: str, *arguments: str, overrides: list[str] = ()
                         ) -> list[str]:
    """The command line of ``protoexplain COMMAND ARGUMENTS... --no-progress`` with a
    ``--set`` for each of ``overrides``, run by this Python."""
    sets = [part for item in overrides for part in ("--set", item)]
    return [sys.executable, "-m", "protoexplain.cli", command, *arguments, "--no-progress", *sets]


def run_child(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``command`` in the repository with ``env`` (plus the repository on PYTHONPATH) to
    its end: its wall time and resource usage. A failing command raises with its log."""
    env = {**env, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty child never blocks
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=log)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed:\n{log.read().decode()}")
    return {
        "wall_s": wall,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "minor_faults": float(usage.ru_minflt),
        "max_rss_mib": usage.ru_maxrss / 1024,  # Linux reports KiB
    }


TIMING_KEYS = ("training_seconds", "seconds_per_pair")
"""Values in a run's JSON files that are timings, which differ from run to run."""


def result_values(run_dir: Path) -> dict[str, float]:
    """The numbers of a run's ``metrics.json`` and ``benchmark.json``, timings left out,
    flattened to ``file/key[/key]: value``: what two runs of one command should share."""
    values = {}
    for name in ("metrics.json", "benchmark.json"):
        pending = [(name, json.loads((run_dir / name).read_text()))]
        while pending:
            prefix, item = pending.pop()
            if isinstance(item, dict):
                pending += [(f"{prefix}/{key}", value) for key, value in item.items()
                            if key not in TIMING_KEYS]
            elif isinstance(item, list):
                pending += [(f"{prefix}/{index}", value) for index, value in enumerate(item)]
            elif isinstance(item, (int, float)) and not isinstance(item, bool):
                values[prefix] = float(item)
    return values


def largest_difference(runs: list[dict[str, float]]) -> float:
    """The largest absolute difference of any value between the first run and another (NaN
    when the runs do not hold the same values)."""
    first = runs[0]
    if any(run.keys() != first.keys() for run in runs):
        return float("nan")
    return max((abs(run[key] - first[key]) for run in runs[1:] for key in first
                if not (math.isnan(run[key]) and math.isnan(first[key]))), default=0.0)


def finite(value: Any) -> Any:
    """``value`` (nested dicts and lists) with NaN and infinities as JSON null (a method that
    saves nothing has no break-even; a metric without ground truth has no value)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def nan_for_null(value: Any) -> Any:
    """The inverse of :func:`finite` for read-back JSON: null as NaN."""
    if isinstance(value, dict):
        return {k: nan_for_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nan_for_null(v) for v in value]
    return math.nan if value is None else value
