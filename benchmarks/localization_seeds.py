"""Localization quality across training seeds: train a config once per seed, benchmark every
method on each trained model, and report mean ± std over seeds.

    python benchmarks/localization_seeds.py configs/synthetic_protopnet.yaml \
        --seeds 0 1 2 --methods upsample,hdm --images-per-prototype 3 \
        --out benchmarks/results/localization_synthetic

Each seed's run directory goes under ``--runs`` (reused when it already holds a finished
run, so an interrupted study continues). Prints a Markdown table and writes
``OUT.json`` ({"per_seed": ..., "aggregate": {method: {metric: {mean, std, runs}}}}) and
``OUT.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import torch

from protoexplain.benchmark import aggregate_runs, aggregate_table
from protoexplain.config import load_config
from protoexplain.pipeline import benchmark_run, train_and_report
from protoexplain.run_dir import load_run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", help="YAML config to train (see configs/)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--methods", default="upsample,hdm", help="comma-separated localization methods"
    )
    parser.add_argument("--images-per-prototype", type=int, default=3)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every seed",
    )
    parser.add_argument(
        "--runs",
        type=Path,
        default=Path("runs/seeds"),
        help="where the per-seed run directories go",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output path without extension (.json and .md are written)",
    )
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def _finite(value):
    """NaN and infinities as JSON null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    methods = args.methods.split(",")
    progress = not args.no_progress
    per_seed = {}
    for seed in args.seeds:
        run_dir = args.runs / f"{Path(args.config).stem}_seed{seed}"
        config = load_config(
            args.config,
            [*args.overrides, f"seed={seed}", "localization.evaluation_methods=[upsample]"],
        )
        if not (run_dir / "metrics.json").exists():
            train_and_report(config, run_dir, progress=progress)
        run = load_run(run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        # single-label runs report test accuracy, multi-label (XProtoNet) runs mean AUROC
        quality = {key: metrics[key] for key in ("test_accuracy", "test_auroc") if key in metrics}
        results = benchmark_run(
            run, methods, images_per_prototype=args.images_per_prototype, progress=progress
        )
        per_seed[seed] = {method: {**quality, **values} for method, values in results.items()}
    aggregated = aggregate_runs(list(per_seed.values()))
    table = aggregate_table(aggregated)
    header = (
        f"Localization benchmark, {Path(args.config).name}, seeds "
        f"{', '.join(map(str, args.seeds))}, {args.images_per_prototype} test images per "
        f"prototype (torch {torch.__version__}, {torch.get_num_threads()} threads)\n\n"
    )
    print(header + table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "config": args.config,
        "seeds": args.seeds,
        "methods": methods,
        "images_per_prototype": args.images_per_prototype,
        "overrides": args.overrides,
        "per_seed": {str(k): v for k, v in per_seed.items()},
        "aggregate": aggregated,
    }
    args.out.with_suffix(".json").write_text(json.dumps(_finite(summary), indent=2) + "\n")
    args.out.with_suffix(".md").write_text(header + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
