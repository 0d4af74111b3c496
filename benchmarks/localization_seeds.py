"""Localization quality across training seeds: train a config once per seed, benchmark every
method on each trained model, and report mean ± std over seeds.

    python benchmarks/localization_seeds.py configs/synthetic_protopnet.yaml \
        --seeds 0 1 2 --methods upsample,hdm --images-per-prototype 3 \
        --out benchmarks/results/localization_synthetic_cpu_seeds0-2

Each seed's run directory goes under ``--runs`` (reused when it already holds a finished
run, so an interrupted study continues). Prints Markdown tables and writes ``OUT.json``
({"per_seed": ..., "aggregate": {method: {metric: {mean, std, runs}}}, "comparison": ...})
and ``OUT.md``: the headline metrics of every method (mean ± std over seeds), whether
``--method`` beats ``--baseline`` by more than the seed spread, and the full table.
``--from-json OUT.json`` rewrites the tables from saved results without running anything.
Given several saved studies of the same config and settings (the same seeds trained on other
machines, say, which give other models), ``--from-json A.json B.json ...`` pools their runs
into one table, each run named ``STEM:SEED`` after its file, so that a verdict can rest on
more training runs than one study has (``--force-pool`` when their settings differ)::

    python benchmarks/localization_seeds.py --from-json \
        benchmarks/results/localization_fashion_h100_seeds0-2.json \
        benchmarks/results/localization_fashion_cpu-a_seeds0-5.json \
        --force-pool --out benchmarks/results/localization_fashion_pooled_9runs_hdm

Results and what they show: docs/localization-benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import torch
from study_io import add_images_per_prototype, finite, nan_for_null, publish_report

from protoexplain.atomic_io import atomic_write_json
from protoexplain.benchmark import (
    aggregate_runs,
    aggregate_table,
    compare_across_runs,
    comparison_table,
)
from protoexplain.checkpoint import CHECKPOINT_NAME, load_checkpoint
from protoexplain.config import LocalizationConfig, load_config
from protoexplain.malloc_tuning import tune_malloc
from protoexplain.metrics.localization import METRICS_VERSION
from protoexplain.metrics.registry import metric_names
from protoexplain.pipeline import benchmark_run, evaluate_run, train_and_report
from protoexplain.run_dir import load_run
from protoexplain.train_masker import AMORTIZED, MASKER_NAME, add_training_cost, train_masker
from prototypes.localization.learned_masks import PROTOTYPE_DEFAULTS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", nargs="?", help="YAML config to train (see configs/)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--methods", default="upsample,hdm", help="comma-separated localization methods"
    )
    add_images_per_prototype(parser, default=3)
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
    parser.add_argument(
        "--masker-set",
        dest="masker_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="train-masker settings for the runs whose mask predictor (method amortized) is "
        "trained here, when a run has no masker.pt",
    )
    parser.add_argument("--method", default="hdm", help="method compared with --baseline")
    parser.add_argument("--baseline", default="upsample")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        help="rewrite OUT.md (and print it) from this saved OUT.json instead of running; "
        "several files of the same config and settings are pooled into one table",
    )
    parser.add_argument(
        "--force-pool",
        action="store_true",
        help="pool the --from-json studies even where their settings differ (say, one "
        "computed stability and another did not); each file's settings stay in OUT.json",
    )
    parser.add_argument("--no-report", action="store_true",
                        help="do not write each trained run's HTML report (a third to a half "
                             "of a small run's time; 'protoexplain report RUN_DIR' writes it "
                             "later)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.config is None and args.from_json is None:
        parser.error("give a CONFIG to run, or --from-json with saved results")
    return args


COMPARED = metric_names(kind="quality", model_level=False)
"""Quality metrics of the method-versus-baseline comparison."""
HEADLINE = (
    "test_accuracy",
    "test_auroc",
    *COMPARED,
    *metric_names(kind="quality", model_level=True),
    "sanity_spearman",
    *metric_names(kind="cost"),
    "pairs",
)
"""Rows of the headline table (those the results have), without the per-fraction values."""


def tables(summary: dict, method: str, baseline: str) -> tuple[str, dict]:
    """The Markdown report of a study's summary (NaN, not null), and the comparison it
    contains."""
    aggregated = summary["aggregate"]
    present = {metric for stats in aggregated.values() for metric in stats}
    runs = list(summary["per_seed"].values())
    comparison = compare_across_runs(runs, method, baseline, [m for m in COMPARED if m in present])
    text = (
        f"Localization benchmark, {Path(summary['config']).name}, seeds "
        f"{', '.join(map(str, summary['seeds']))}, "
        f"{summary['images_per_prototype'] or 'all'} test images per prototype "
        f"({summary.get('environment', '')})\n\n"
        + aggregate_table(aggregated, [m for m in HEADLINE if m in present])
        + f"\n{method} against {baseline} (gain: difference of the means, positive = better; "
        "spread: the larger standard deviation over seeds)\n\n"
        + comparison_table(comparison, method, baseline)
        + "\nEvery metric\n\n"
        + aggregate_table(aggregated)
    )
    return text, comparison


def write_report(summary: dict, out: Path, method: str, baseline: str) -> None:
    """Print the study's tables and write ``OUT.json`` (with the comparison) and ``OUT.md``."""
    text, comparison = tables(summary, method, baseline)
    publish_report(out, text, finite({**summary, "comparison": comparison}))


POOLED_SETTINGS = ("config", "images_per_prototype", "overrides")
"""What saved studies must share to be pooled into one table."""


def pool_studies(paths: list[Path], *, force: bool = False) -> dict:
    """One summary of several saved studies (``OUT.json`` files): one file's summary as it
    is; several files' runs side by side, each run named ``STEM:SEED``, restricted to the
    methods every file has and aggregated anew. Each file's settings are kept under
    ``pooled_settings``.

    Raises ValueError, naming the files, when they share no method or, unless ``force``,
    differ in a setting of :data:`POOLED_SETTINGS` (``force`` is for settings known not to
    change the compared values, such as whether stability was computed)."""
    studies = {}
    for path in paths:
        try:
            studies[path] = nan_for_null(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read saved study {path}: {error}") from None
    if len(studies) == 1:
        return next(iter(studies.values()))
    first_path, first = next(iter(studies.items()))
    if not force:
        for path, study in studies.items():
            for key in POOLED_SETTINGS:
                mine, theirs = study.get(key), first.get(key)
                if key == "overrides":
                    mine, theirs = sorted(mine or []), sorted(theirs or [])
                if mine != theirs:
                    raise ValueError(f"{path} and {first_path} differ in {key!r} ({mine!r} "
                                     f"against {theirs!r}): only studies of the same config "
                                     "and settings can be pooled")
    methods = [m for m in first["methods"] if all(m in s["methods"] for s in studies.values())]
    if not methods:
        raise ValueError(f"{', '.join(map(str, paths))} share no method")
    per_seed = {
        f"{path.stem}:{seed}": {method: values[method] for method in methods}
        for path, study in studies.items()
        for seed, values in study["per_seed"].items()
    }
    if len(per_seed) != sum(len(s["per_seed"]) for s in studies.values()):
        raise ValueError("two of the files have the same name: rename one to pool them")
    environments = dict.fromkeys(s.get("environment", "") for s in studies.values())
    return {
        **{key: first.get(key) for key in POOLED_SETTINGS},
        "seeds": list(per_seed),
        "methods": methods,
        "environment": "; ".join(e for e in environments if e),
        "pooled_settings": {str(path): {key: study.get(key) for key in POOLED_SETTINGS}
                            for path, study in studies.items()},
        "per_seed": per_seed,
        "aggregate": aggregate_runs(list(per_seed.values())),
    }


QUALITY = {"test_accuracy", "test_auroc"}
"""Test metrics of a run: single-label runs report accuracy, multi-label ones mean AUROC."""
CACHE_NAME = "seed_study.json"
"""Per-method results of a run, kept in its directory with the settings that produced them."""


def method_settings(run_dir: Path, method: str, localization: LocalizationConfig) -> dict:
    """What a method's cached results depend on besides the study's settings: its own
    ``method_options``, its prototype defaults, and for ``amortized`` the settings of the
    run's mask predictor. Changing one method's options recomputes that method alone."""
    if method == AMORTIZED and (run_dir / MASKER_NAME).exists():
        defaults = {"masker": load_checkpoint(run_dir / MASKER_NAME)["config"]}
    else:
        defaults = PROTOTYPE_DEFAULTS.get(method, {})
    return {"options": localization.method_options.get(method, {}), "defaults": defaults}


def read_cache(path: Path) -> dict:
    """A run's cache, ``{"settings", "method_settings", "results"}``; empty when there is
    none. A cache that keyed every method on all methods' options at once (``settings``
    holding ``method_options``, ``defaults`` per method) is read into that form."""
    if not path.exists():
        return {}
    cache = json.loads(path.read_text())
    if "method_options" in cache.get("settings", {}):
        settings = dict(cache["settings"])
        options = settings.pop("method_options")
        defaults = cache.get("defaults", {})
        cache = {"settings": settings, "results": cache["results"], "method_settings": {
            method: {"options": options.get(method, {}), "defaults": defaults.get(method, {})}
            for method in cache["results"]}}
    return cache


def cached_benchmark(
    run_dir: Path,
    methods: list[str],
    images_per_prototype: int | None,
    localization: LocalizationConfig,
    progress: bool,
) -> dict:
    """Benchmark results of ``methods`` on a run, computing only those not already cached
    under the same settings (metrics version, pairs per prototype, metric options) and, per
    method, the same :func:`method_settings`.

    ``localization``: the study's localization settings (its ``--set`` overrides included);
    they replace those the run was trained with, which only matter for the benchmark."""
    run = load_run(run_dir)
    run.config = dataclasses.replace(run.config, localization=localization)
    settings = {
        "metrics_version": METRICS_VERSION,
        "images_per_prototype": images_per_prototype,
        "metric_options": localization.metric_options,
    }
    cache_path = run_dir / CACHE_NAME
    cache = read_cache(cache_path)
    same = cache.get("settings") == settings
    results = nan_for_null(cache["results"]) if same else {}
    known = cache.get("method_settings", {}) if same else {}
    wanted = {method: json.loads(json.dumps(method_settings(run_dir, method, localization)))
              for method in methods}  # as read back from the cache (lists, not tuples)
    missing = [method for method in methods
               if method not in results or known.get(method) != wanted[method]]
    if missing:
        fresh = benchmark_run(
            run, missing, images_per_prototype=images_per_prototype, progress=progress
        )
        results.update(fresh)
        known.update({method: wanted[method] for method in missing})
        atomic_write_json(
            cache_path,
            finite({"settings": settings, "method_settings": known, "results": results}),
        )
    if AMORTIZED in results and (run_dir / MASKER_NAME).exists():  # against a cached HDM too
        add_training_cost(results, load_checkpoint(run_dir / MASKER_NAME)["record"])
    return {method: results[method] for method in methods}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        try:
            summary = pool_studies(args.from_json, force=args.force_pool)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        write_report(summary, args.out, args.method, args.baseline)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    tune_malloc()  # as the protoexplain command does
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
            # an interrupted training continues from its last completed stage (exactly)
            resume = (run_dir / CHECKPOINT_NAME).exists()
            train_and_report(config, run_dir, resume=resume, progress=progress,
                             report=not args.no_report)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        if not QUALITY.intersection(metrics):  # interrupted after training, before the test
            metrics = evaluate_run(load_run(run_dir), progress=progress)
        quality = {key: metrics[key] for key in QUALITY if key in metrics}
        if AMORTIZED in methods and not (run_dir / MASKER_NAME).exists():
            train_masker(load_run(run_dir), args.masker_overrides, progress=progress)
        results = cached_benchmark(
            run_dir, methods, args.images_per_prototype, config.localization, progress
        )
        per_seed[seed] = {method: {**quality, **results[method]} for method in methods}
    summary = {
        "config": args.config,
        "seeds": args.seeds,
        "methods": methods,
        "images_per_prototype": args.images_per_prototype,
        "overrides": args.overrides,
        "masker_overrides": args.masker_overrides,
        "environment": f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "per_seed": {str(k): v for k, v in per_seed.items()},
        "aggregate": aggregate_runs(list(per_seed.values())),
    }
    write_report(summary, args.out, args.method, args.baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
