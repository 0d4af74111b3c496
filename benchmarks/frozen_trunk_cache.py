"""What ``training.cache_frozen_trunk`` saves, and that it trains the same model.

Trains one config twice in this process, side by side: on images, and with the frozen
trunk's maps cached (``training.cache_frozen_trunk: true``), both with the schedule the
options give (``--warm-epochs`` warm-up epochs with the trunk frozen, one push, then
``--last-layer-epochs``; no joint epoch unless ``--joint-epochs``). It reports the seconds of
each stage kind (the cached run's first warm and first last-layer stage include computing
the maps), the speed-up of the whole run and of each kind, and the largest difference
between the two runs' recorded losses and accuracies (relative to the value).

Run: ``python benchmarks/frozen_trunk_cache.py configs/synthetic_protopnet_lite0.yaml
--set "data.options.num_samples={train: 320, val: 64, test: 64}" --out
benchmarks/results/frozen_trunk_cache_synthetic_lite0_cpu``. It prints a Markdown table and
writes ``OUT.json`` and ``OUT.md``. Results: docs/pretrained-trunks.md.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from study_io import publish_report

from protoexplain.config import load_config
from protoexplain.training_run import train

VARIANTS = {"images": "false", "cached": "true"}


def _schedule(args: argparse.Namespace) -> list[str]:
    epochs = args.warm_epochs + args.joint_epochs
    return ["training.pretrain_epochs=0",
            f"training.epochs={epochs}", f"training.warm_epochs={args.warm_epochs}",
            f"training.push_start={epochs}", f"training.push_every={epochs}",
            "training.final_push=true", f"training.last_layer_epochs={args.last_layer_epochs}",
            "localization.push_method=upsample"]


def _run(args: argparse.Namespace, cached: str, folder: Path) -> tuple[list[dict], float]:
    config = load_config(args.config, [*args.set, *_schedule(args),
                                       f"training.cache_frozen_trunk={cached}"])
    start = time.perf_counter()
    result = train(config, folder, progress=not args.no_progress)
    return result.history, time.perf_counter() - start


def _seconds_by_kind(history: list[dict]) -> dict[str, float]:
    seconds: dict[str, float] = defaultdict(float)
    for entry in history:
        seconds[entry["kind"]] += entry["seconds"]
    return dict(seconds)


def _largest_relative_difference(first: list[dict], second: list[dict]) -> float:
    largest = 0.0
    for a, b in zip(first, second, strict=True):
        for key, value in a.items():
            if key.startswith(("train_", "val_")) and isinstance(value, float):
                largest = max(largest, abs(b[key] - value) / max(abs(value), 1e-12))
    return largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a training config (path or name)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable (as protoexplain train --set)")
    parser.add_argument("--warm-epochs", type=int, default=3)
    parser.add_argument("--joint-epochs", type=int, default=0)
    parser.add_argument("--last-layer-epochs", type=int, default=2)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", type=Path, required=True,
                        help="output path without suffix (OUT.json, OUT.md)")
    args = parser.parse_args()

    histories, totals = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for name, cached in VARIANTS.items():
            histories[name], totals[name] = _run(args, cached, Path(folder) / name)
    kinds = {name: _seconds_by_kind(history) for name, history in histories.items()}
    rows = ["| stages | on images (s) | cached (s) | speed-up |", "|---|---:|---:|---:|"]
    for kind in kinds["images"]:
        images, cached = kinds["images"][kind], kinds["cached"][kind]
        rows.append(f"| {kind} | {images:.1f} | {cached:.1f} | {images / cached:.2f}x |")
    rows.append(f"| whole run | {totals['images']:.1f} | {totals['cached']:.1f} | "
                f"{totals['images'] / totals['cached']:.2f}x |")
    difference = _largest_relative_difference(histories["images"], histories["cached"])
    text = (f"# Frozen-trunk cache: {args.config}\n\n" + "\n".join(rows) + "\n\n"
            f"Largest relative difference of a recorded loss or accuracy: {difference:.2g}.\n"
            f"Overrides: {' '.join(args.set) or 'none'}; {args.warm_epochs} warm-up, "
            f"{args.joint_epochs} joint, {args.last_layer_epochs} last-layer epochs; "
            f"{torch.get_num_threads()} torch threads, {platform.machine()}.\n")
    record = {"config": args.config, "overrides": args.set, "schedule": _schedule(args),
              "seconds_by_kind": kinds, "total_seconds": totals,
              "largest_relative_difference": difference, "histories": histories,
              "threads": torch.get_num_threads()}
    publish_report(args.out, text, record)


if __name__ == "__main__":
    main()
