"""Compare option variants of localization methods on one trained run (ablations, budgets).

    python benchmarks/localization_variants.py runs/demo \
        --variant "upsample=upsample" \
        --variant "hdm 25=hdm:benchmark_steps=25,auxiliary_steps=25" \
        --variant "hdm 50=hdm:benchmark_steps=50,auxiliary_steps=50" \
        --reference "hdm 50" --out benchmarks/results/hdm_budget_synthetic

Each ``--variant`` is ``NAME=METHOD[:key=value,...]`` (values parsed as YAML, so
``baseline=blur`` and ``grid_sizes=[4,8]`` work). Every variant is scored on the same
prototypes and test images with the localization metrics; stability, the randomisation check
and deletion/insertion are skipped unless ``--all-metrics`` (they do not measure where a map
points and double the cost). With ``--reference``, each cell also gives the share of that
variant's value (e.g. the converged quality of the largest budget). Prints a Markdown table and
writes ``OUT.json`` and ``OUT.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import yaml
from study_io import save_report

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--reference", help="variant whose values count as 100%%")
    parser.add_argument("--images-per-prototype", type=int, default=2)
    parser.add_argument("--all-metrics", action="store_true")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output path without extension (.json and .md are written)",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    run = load_run(args.run_dir)
    test_set = build_dataset(run.config, "test", augment=False)
    variants = [parse_variant(text) for text in args.variant]
    settings = (
        LocalizationSettings()
        if args.all_metrics
        else LocalizationSettings(stability=False, sanity=False, deletion_insertion=False)
    )
    results = {}
    for name, method, options in variants:
        scored = run_benchmark(
            run.model,
            test_set,
            {method: options},
            images_per_prototype=args.images_per_prototype,
            settings=settings,
            batch_size=run.config.data.eval_batch_size,
            device=run.device,
            seed=run.config.seed,
            progress=not args.no_progress,
        )
        results[name] = scored[method]
    reference = results.get(args.reference) if args.reference else None
    metrics = [m for m in QUALITY if all(m in row for row in results.values())]
    lines = [
        f"Localization variants on {args.run_dir} ({args.images_per_prototype} test images "
        "per prototype)" + (f"; (x%) = share of '{args.reference}'" if reference else ""),
        "",
        "| variant | " + " | ".join(metrics + list(COST)) + " |",
        "|---" * (1 + len(metrics) + len(COST)) + "|",
    ]
    for name, row in results.items():
        cells = []
        for metric in metrics:
            cell = f"{row[metric]:.3f}"
            if reference and reference[metric] and math.isfinite(reference[metric]):
                cell += f" ({100 * row[metric] / reference[metric]:.0f}%)"
            cells.append(cell)
        cells += [f"{row[m]:.3g}" for m in COST]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    record = {
        "run": str(args.run_dir),
        "images_per_prototype": args.images_per_prototype,
        "variants": {
            name: {"method": method, "options": options} for name, method, options in variants
        },
        "results": results,
    }
    save_report(args.out, table + "\n", record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
