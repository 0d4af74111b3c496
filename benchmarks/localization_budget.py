"""Quality of a learned-mask localization against its optimisation budget, on a trained run.

    python benchmarks/localization_budget.py runs/demo --method hdm \
        --options benchmark_steps,auxiliary_steps --values 10,25,50,100 \
        --out benchmarks/results/hdm_budget_synthetic

For each value, every named option of the method is set to it (e.g. both HDM stages' step
counts), and the localization metrics are computed on the same prototypes and test images.
The table reports each metric and its share of the largest budget's value (the "converged"
quality), plus the cost (model passes and seconds per pair). Stability, the randomisation
check and deletion/insertion are left out: they do not measure where the map points.
Writes ``OUT.json`` and ``OUT.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from protoexplain.benchmark import run_benchmark
from protoexplain.factory import build_dataset
from protoexplain.metrics.localization import LocalizationSettings
from protoexplain.run_dir import load_run

QUALITY = (
    "relevance",
    "energy_object",
    "pointing_object",
    "energy_part",
    "pointing_part",
    "iou_part",
    "consistency",
    "fidelity",
)
COST = ("forward_passes_per_pair", "seconds_per_pair")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--method", default="hdm")
    parser.add_argument(
        "--options",
        default="benchmark_steps,auxiliary_steps",
        help="comma-separated option names set to each value",
    )
    parser.add_argument(
        "--values", default="10,25,50,100", help="comma-separated integer budgets, smallest first"
    )
    parser.add_argument("--images-per-prototype", type=int, default=2)
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output path without extension (.json and .md are written)",
    )
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = load_run(args.run_dir)
    test_set = build_dataset(run.config, "test", augment=False)
    base = dict(run.config.localization.method_options.get(args.method, {}))
    names = args.options.split(",")
    values = [int(v) for v in args.values.split(",")]
    settings = LocalizationSettings(stability=False, sanity=False, deletion_insertion=False)
    methods = {f"{args.method} {value}": {**base, **{n: value for n in names}} for value in values}
    results = run_benchmark(
        run.model,
        test_set,
        methods,
        images_per_prototype=args.images_per_prototype,
        settings=settings,
        batch_size=run.config.data.eval_batch_size,
        device=run.device,
        seed=run.config.seed,
        progress=not args.no_progress,
    )
    converged = results[f"{args.method} {values[-1]}"]
    metrics = [m for m in QUALITY if m in converged]
    lines = [
        f"{args.method} quality against budget ({', '.join(names)} = value) on "
        f"{args.run_dir}, {args.images_per_prototype} test images per prototype; "
        "each cell: value (share of the largest budget's value)",
        "",
        "| budget | " + " | ".join(metrics + list(COST)) + " |",
        "|---" * (1 + len(metrics) + len(COST)) + "|",
    ]
    shares = {}
    for value in values:
        row = results[f"{args.method} {value}"]
        shares[value] = {m: row[m] / converged[m] if converged[m] else math.nan for m in metrics}
        cells = [f"{row[m]:.3f} ({100 * shares[value][m]:.0f}%)" for m in metrics]
        cells += [f"{row[m]:.3g}" for m in COST]
        lines.append(f"| {value} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(table + "\n")
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {
                "run": str(args.run_dir),
                "method": args.method,
                "options": names,
                "values": values,
                "results": results,
                "share_of_largest": {str(k): v for k, v in shares.items()},
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
