"""Compare option variants of localization methods on trained runs (ablations, budgets).

    python benchmarks/localization_variants.py runs/demo \
        --variant "upsample=upsample" \
        --variant "hdm 25=hdm:benchmark_steps=25,auxiliary_steps=25" \
        --variant "hdm 50=hdm:benchmark_steps=50,auxiliary_steps=50" \
        --reference "hdm 50" --out benchmarks/results/hdm_budget_demo

Each ``--variant`` is ``NAME=METHOD[:key=value,...]`` (values parsed as YAML, so
``baseline=blur`` and ``grid_sizes=[4,8]`` work). Every variant is scored on the same
prototypes and test images with the localization metrics; stability, the randomisation check
and deletion/insertion are skipped unless ``--all-metrics`` (they do not measure where a map
points and double the cost); ``--stability`` adds stability alone. With ``--reference``, each
cell also gives the share of that variant's value (e.g. the converged quality of the largest
budget). Prints a Markdown table and writes ``OUT.json`` and ``OUT.md``. Given several run
directories (e.g. the training seeds of ``localization_seeds.py``), each cell is the mean ±
sample std over the runs, and the JSON keeps every run's values. The studies run with it, and
what they decided: docs/method-design.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import yaml
from study_io import add_images_per_prototype, publish_report

from protoexplain.benchmark import aggregate_runs, run_benchmark
from protoexplain.factory import build_dataset
from protoexplain.malloc_tuning import tune_malloc
from protoexplain.pipeline import metric_settings
from protoexplain.run_dir import load_run
from prototypes import check_localization_options

QUALITY = (
    "relevance",
    "energy_object",
    "pointing_object",
    "energy_part",
    "pointing_part",
    "iou_part",
    "energy_box",
    "pointing_box",
    "iou_box",
    "consistency",
    "responsible_part_hit",
    "oracle_consistency",
    "oracle_stability",
    "fidelity",
    "stability",
    "deletion",
    "insertion",
    "sanity_spearman",
)
COST = ("forward_passes_per_pair", "seconds_per_pair")


def parse_variant(text: str) -> tuple[str, str, dict]:
    """``NAME=METHOD[:key=value,...]`` -> (name, method, options)."""
    if "=" not in text:
        raise SystemExit(f"--variant {text!r}: expected NAME=METHOD[:key=value,...]")
    name, spec = text.split("=", 1)
    method, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, _split_options(rest)):
        key, _, value = item.partition("=")
        options[key.strip()] = yaml.safe_load(value)
    return name.strip(), method.strip(), options


def _split_options(text: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def score_variants(
    run_dir: Path,
    variants: list[tuple[str, str, dict]],
    costly: dict[str, bool],
    images_per_prototype: int | None,
    quiet: bool,
    batch_size: int | None = None,
) -> dict[str, dict[str, float]]:
    """``{variant: {metric: value}}`` of every variant on one run's pairs (``batch_size``
    pairs per localization call; default the run's ``data.eval_batch_size``); ``costly``: the
    study's choice of ``stability``, ``sanity`` and ``deletion_insertion``, over the run's own
    metric options."""
    run = load_run(run_dir)
    settings = metric_settings(run.config, **costly)
    test_set = build_dataset(run.config, "test", augment=False)
    results = {}
    for name, method, options in variants:
        scored = run_benchmark(
            run.model,
            test_set,
            {method: options},
            images_per_prototype=images_per_prototype,
            settings=settings,
            batch_size=run.config.data.eval_batch_size if batch_size is None else batch_size,
            device=run.device,
            seed=run.config.seed,
            progress=not quiet,
        )
        results[name] = scored[method]
    return results


def record_keys(run_dirs: list[Path]) -> list[str]:
    """Names of the runs in the JSON record: the directory names, or the paths if two share
    a name."""
    names = [run_dir.name for run_dir in run_dirs]
    return names if len(set(names)) == len(names) else [str(run_dir) for run_dir in run_dirs]


def variants_table(aggregated: dict, reference: str | None, num_runs: int) -> str:
    """Markdown table of the variants' metrics (mean ± std when ``num_runs`` > 1) and cost;
    with ``reference``, each quality cell also gives its share of that variant's mean."""
    if reference is not None and reference not in aggregated:
        raise SystemExit(f"--reference {reference!r} is not one of the variants")
    base = aggregated.get(reference) if reference else None
    metrics = [m for m in QUALITY if all(m in row for row in aggregated.values())]
    lines = [
        "| variant | " + " | ".join(metrics + list(COST)) + " |",
        "|---" * (1 + len(metrics) + len(COST)) + "|",
    ]
    for name, row in aggregated.items():
        cells = []
        for metric in metrics:
            mean, std = row[metric]["mean"], row[metric]["std"]
            cell = f"{mean:.3f}" + (f" ± {std:.3f}" if num_runs > 1 else "")
            reference_mean = base[metric]["mean"] if base else math.nan
            if reference_mean and math.isfinite(reference_mean):
                cell += f" ({100 * mean / reference_mean:.0f}%)"
            cells.append(cell)
        cells += [f"{row[m]['mean']:.3g}" for m in COST]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--reference", help="variant whose values count as 100%%")
    add_images_per_prototype(parser, default=2)
    parser.add_argument(
        "--batch-size",
        type=int,
        help="pairs per localization call (default: the run's data.eval_batch_size; a GPU "
        "runs the learned masks of many more pairs at once)",
    )
    parser.add_argument(
        "--all-metrics",
        action="store_true",
        help="also stability, the randomisation check and deletion/insertion",
    )
    parser.add_argument(
        "--stability",
        action="store_true",
        help="also Huang's stability (localizes every pair a second time, on a noisy image)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output path without extension (.json and .md are written)",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be a positive integer, got {args.batch_size}")
    variants = [parse_variant(text) for text in args.variant]
    for name, method, options in variants:  # every variant, before any run is loaded
        try:
            check_localization_options(method, options)
        except ValueError as error:
            parser.error(f"--variant {name!r}: {error}")
    if args.reference is not None and args.reference not in [name for name, _, _ in variants]:
        parser.error(f"--reference {args.reference!r} is not one of the variants' names")
    tune_malloc()  # as the protoexplain command does: hours of learned masks on a CPU
    costly = {
        "stability": args.all_metrics or args.stability,
        "sanity": args.all_metrics,
        "deletion_insertion": args.all_metrics,
    }
    per_run = [
        score_variants(
            run_dir,
            variants,
            costly,
            args.images_per_prototype,
            args.no_progress,
            args.batch_size,
        )
        for run_dir in args.run_dirs
    ]
    table = variants_table(aggregate_runs(per_run), args.reference, len(per_run))
    runs = ", ".join(map(str, args.run_dirs))
    table = (
        f"Localization variants on {runs} ({args.images_per_prototype or 'all'} test images "
        "of its class per prototype"
        + (", mean ± std over the runs" if len(per_run) > 1 else "")
        + ")"
        + (f"; (x%) = share of '{args.reference}'" if args.reference else "")
        + "\n\n"
        + table
    )
    record = {
        "runs": [str(run_dir) for run_dir in args.run_dirs],
        "images_per_prototype": args.images_per_prototype,
        "variants": {
            name: {"method": method, "options": options} for name, method, options in variants
        },
        "results": dict(zip(record_keys(args.run_dirs), per_run, strict=True)),
    }
    publish_report(args.out, table, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
