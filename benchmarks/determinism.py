"""Does a seed reproduce its run? Trainings of one config side by side, with the config key
``deterministic`` on and off.

Each training is ``protoexplain train CONFIG`` (training, evaluation, projection and the
config's benchmark) in its own process, ``--repeats`` times per setting, the order of the
settings alternating from round to round. Every run is compared with the first run of its
setting:

- the weights of its checkpoint, tensor by tensor (the selected model and the last trained
  one): bit-equal or not, how many tensors differ and the largest absolute difference;
- every number of its ``metrics.json`` and ``benchmark.json`` (timings left out): the
  largest absolute difference.

It also reports each run's device, headline test metric, the seconds of its training stages
(``history.json``) and its wall time. On the CPU both settings should reproduce exactly; on
a GPU only ``deterministic: true`` is meant to (docs/reproducibility.md).

    OMP_NUM_THREADS=1 python benchmarks/determinism.py configs/synthetic_protopnet.yaml \\
        --repeats 2 --out benchmarks/results/determinism_synthetic_cpu

Prints a Markdown table and writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from study_io import (
    largest_difference,
    protoexplain_command,
    publish_report,
    result_values,
    run_child,
)

from protoexplain.checkpoint import CHECKPOINT_NAME, load_checkpoint
from protoexplain.evaluation import headline

SETTINGS = {"on": "true", "off": "false"}
"""The study's names for the two settings, and the value of ``deterministic`` they set."""


def train_command(config: Path, out: Path, setting: str, overrides: list[str]) -> list[str]:
    """``protoexplain train`` of ``config`` into ``out`` with ``deterministic`` set as
    ``setting`` says; the caller's ``--set`` items come first, so the setting wins."""
    return protoexplain_command("train", str(config), "--out", str(out),
                                overrides=[*overrides, f"deterministic={SETTINGS[setting]}"])


def checkpoint_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The selected model's and the last trained model's tensors of a run's checkpoint, by
    name (``selected/...``, ``trained/...``)."""
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_NAME)
    models = {"selected": checkpoint["model"], "trained": checkpoint["training_state"]["model"]}
    return {f"{which}/{name}": tensor for which, state in models.items()
            for name, tensor in state.items()}


def weight_difference(first: dict[str, torch.Tensor],
                      other: dict[str, torch.Tensor]) -> dict[str, Any]:
    """How ``other``'s tensors differ from ``first``'s: ``bit_equal`` (same names, shapes,
    dtypes and bits), ``tensors_differing`` and ``max_abs_difference`` (over floating-point
    tensors of matching shape; NaN when the names or shapes do not match)."""
    reshaped = [name for name in first.keys() & other.keys()
                if first[name].shape != other[name].shape]
    if first.keys() != other.keys() or reshaped:
        return {"bit_equal": False,
                "tensors_differing": len(first.keys() ^ other.keys()) + len(reshaped),
                "max_abs_difference": float("nan")}
    differing = [name for name in first if first[name].dtype != other[name].dtype
                 or not torch.equal(first[name], other[name])]
    largest = max((float((first[name].double() - other[name].double()).abs().max())
                   for name in differing if first[name].is_floating_point()
                   and first[name].numel()), default=0.0)
    return {"bit_equal": not differing, "tensors_differing": len(differing),
            "max_abs_difference": largest}


def describe_run(run_dir: Path, usage: dict[str, float]) -> dict[str, Any]:
    """What the table shows of one run, before the comparison."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    return {"device": metrics["device"], "test": headline(metrics),
            "training_stage_seconds": sum(stage["seconds"] for stage in history),
            "wall_s": usage["wall_s"]}


def study(config: Path, settings: list[str], repeats: int, overrides: list[str],
          scratch: Path) -> dict[str, list[dict[str, Any]]]:
    """Train ``repeats`` times per setting (order alternating by round) and compare every
    run with the first of its setting."""
    runs: dict[str, list[Path]] = {setting: [] for setting in settings}
    described: dict[str, list[dict[str, Any]]] = {setting: [] for setting in settings}
    for round_ in range(repeats):
        for setting in (settings if round_ % 2 == 0 else settings[::-1]):
            out = scratch / f"{setting}-{round_}"
            usage = run_child(train_command(config, out, setting, overrides), dict(os.environ))
            runs[setting].append(out)
            described[setting].append(describe_run(out, usage))
            print(f"deterministic {setting}, round {round_}: {usage['wall_s']:.1f} s",
                  file=sys.stderr)
    for setting, run_dirs in runs.items():
        first_weights, first_values = checkpoint_weights(run_dirs[0]), result_values(run_dirs[0])
        for run_dir, record in zip(run_dirs, described[setting], strict=True):
            record.update(weight_difference(first_weights, checkpoint_weights(run_dir)))
            record["max_result_difference"] = largest_difference(
                [first_values, result_values(run_dir)])
    return described


def table(record: dict[str, Any]) -> str:
    """The study's Markdown: one row per run, compared with the first run of its setting."""
    command = " ".join(["protoexplain train", record["config"],
                        *(f"--set {item}" for item in record["overrides"])])
    lines = [f"`{command}`, each run in its own process, compared with the first run of its "
             f"setting ({record['machine']}, {record['cpus']} CPUs, OMP_NUM_THREADS="
             f"{record['omp_num_threads'] or 'unset'}, torch {record['torch']}).", "",
             "| deterministic | run | device | test | training stages (s) | wall (s) | "
             "weights bit-equal | tensors differing | max weight difference | "
             "max result difference |", "|---" * 10 + "|"]
    for setting, records in record["runs"].items():
        for index, run in enumerate(records):
            compared = ("reference | | | |" if index == 0 else
                        f"{'yes' if run['bit_equal'] else 'no'} | {run['tensors_differing']} | "
                        f"{run['max_abs_difference']:.3g} | {run['max_result_difference']:.3g} |")
            lines.append(f"| {setting} | {index} | {run['device']} | {run['test']} | "
                         f"{run['training_stage_seconds']:.1f} | {run['wall_s']:.1f} | {compared}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", type=Path, help="the YAML config to train")
    parser.add_argument("--settings", default="on,off",
                        help="comma-separated settings of `deterministic`: on, off")
    parser.add_argument("--repeats", type=int, default=2,
                        help="trainings per setting (default 2; at least 2 to compare)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override for every training")
    parser.add_argument("--out", type=Path, required=True, help="output path without extension")
    args = parser.parse_args(argv)
    settings = args.settings.split(",")
    unknown = [setting for setting in settings if setting not in SETTINGS]
    if unknown or len(set(settings)) != len(settings):
        parser.error(f"--settings takes on and off, each once; got {args.settings!r}")
    if args.repeats < 2:
        parser.error("--repeats must be at least 2: a run is compared with another")
    if not args.config.is_file():
        parser.error(f"no config file {args.config}")

    with tempfile.TemporaryDirectory(prefix="determinism-") as scratch:
        results = study(args.config, settings, args.repeats, args.overrides, Path(scratch))
    record = {"config": str(args.config), "overrides": args.overrides, "repeats": args.repeats,
              "machine": platform.node(), "cpus": os.cpu_count(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch": torch.__version__,
              "runs": results}
    publish_report(args.out, table(record), record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
