"""The main job: train → evaluate → localize prototypes → run directory.

A run directory holds (DESIGN.md): ``config.yaml``, ``checkpoint.pt``, ``metrics.json``,
``projection.json``, one PNG per prototype under ``prototypes/``, ``report/`` (the HTML
report, :mod:`protoexplain.report`) and ``train.log``.

Under torchrun (:mod:`protoexplain.distributed`) every process trains, and localizes for
the projection, the benchmark and the report on its share of the batches; rank 0 alone
evaluates and writes the files, while the others wait for it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from protoexplain import distributed
from protoexplain.atomic_io import atomic_write_json
from protoexplain.benchmark import run_benchmark, write_benchmark
from protoexplain.config import Config
from protoexplain.data.labels import class_names_of
from protoexplain.evaluation import classification_metrics, headline
from protoexplain.factory import build_dataset
from protoexplain.metrics.localization import LocalizationSettings
from protoexplain.projection import localize_records, projection_json
from protoexplain.report import write_prototype_pictures, write_report
from protoexplain.run_dir import LoadedRun, load_run
from protoexplain.train_masker import AMORTIZED, add_training_cost, attach_masker, load_masker
from protoexplain.training_run import train

log = logging.getLogger("protoexplain")


def method_options(config: Config, names: list[str], run: LoadedRun | None = None
                   ) -> dict[str, dict[str, Any]]:
    """Each named localization method with its configured options; ``amortized`` also gets
    ``run``'s trained mask predictor (``masker.pt``; an error naming ``protoexplain
    train-masker`` when it has none)."""
    options = config.localization.method_options
    chosen = {name: dict(options.get(name, {})) for name in dict.fromkeys(names)}
    if run is not None:
        attach_masker(chosen, run)
    return chosen


def metric_settings(config: Config, **overrides: Any) -> LocalizationSettings:
    """The localization metrics' settings the config names (``localization.metric_options``;
    XProtoNet configs score at the pooled similarity, for one), with ``overrides`` over them
    (a study's choice of the costly metrics, say)."""
    return LocalizationSettings(**{**config.localization.metric_options, **overrides})


def write_projection(run: LoadedRun, *, progress: bool = True) -> list[dict[str, Any]]:
    """Localize every projected prototype, write its picture and ``projection.json``."""
    config = run.config
    push_set = build_dataset(config, "train", augment=False)
    localizations = localize_records(run.model, push_set, run.records,
                                     method_options(config, ["upsample",
                                                             config.localization.push_method],
                                                    run),
                                     batch_size=config.data.eval_batch_size,
                                     device=run.device, progress=progress)
    class_names = class_names_of(push_set)
    if not distributed.is_main_process():  # the localization was shared; rank 0 writes
        return projection_json(run.records, localizations, class_names)
    pictures = write_prototype_pictures(run.path, push_set, run.records, localizations,
                                        class_names, progress=progress)
    rows = projection_json(run.records, localizations, class_names, pictures)
    atomic_write_json(run.path / "projection.json", rows)
    return rows


def evaluate_run(run: LoadedRun, *, progress: bool = True) -> dict[str, Any]:
    """Test-set metrics of a run's selected model, merged into ``metrics.json``."""
    metrics_path = run.path / "metrics.json"
    metrics: dict[str, Any] = {}
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
    test_set = build_dataset(run.config, "test", augment=False)
    metrics.update(classification_metrics(run.model, test_set, run.config, run.device,
                                          progress=progress))
    atomic_write_json(metrics_path, metrics)
    return metrics


def benchmark_run(run: LoadedRun, methods: list[str], *, images_per_prototype: int | None,
                  progress: bool = True) -> dict[str, dict[str, float]]:
    """Compare localization methods on the run's model and test images; writes
    ``benchmark.json`` and ``benchmark.md`` into the run directory (under torchrun: every
    process scores its share of the pairs, rank 0 writes)."""
    test_set = build_dataset(run.config, "test", augment=False)
    results = run_benchmark(run.model, test_set, method_options(run.config, methods, run),
                            images_per_prototype=images_per_prototype,
                            settings=metric_settings(run.config),
                            batch_size=run.config.data.eval_batch_size, device=run.device,
                            seed=run.config.seed, progress=progress)
    if distributed.is_main_process():
        if AMORTIZED in results:  # what the predictor cost to train, and when it pays off
            add_training_cost(results, load_masker(run.path, run.model, run.device)[1])
        json_path, _ = write_benchmark(results, run.path)
        log.info("localization benchmark of %s -> %s", ", ".join(methods), json_path)
    return results


def train_and_report(config: Config, run_dir: str | Path, *, resume: bool = False,
                     progress: bool = True, report: bool = True) -> dict[str, Any]:
    """Train (or resume) a run, then evaluate it and write every output file (the HTML
    report only with ``report``; ``protoexplain report RUN_DIR`` writes it later)."""
    run_dir = Path(run_dir)
    started = time.perf_counter()
    result = train(config, run_dir, resume=resume, progress=progress)
    training_seconds = time.perf_counter() - started
    main = distributed.is_main_process()
    progress = progress and main
    if main:
        atomic_write_json(run_dir / "history.json", result.history)
        atomic_write_json(run_dir / "metrics.json", {
            # NaN (an AUROC undefined on every class of a tiny validation set) is written as null
            result.selection_metric: (None if math.isnan(result.best_val_score)
                                      else result.best_val_score),
            "selected_stage": result.best_stage,
            "training_seconds": round(training_seconds, 1),
            "num_prototypes": len(result.records),
            "device": str(next(result.model.parameters()).device),
            "torch_threads": torch.get_num_threads(),
            "processes": distributed.world_size(),
            # what on_bad_image: skip left out, per split; the settings a resume changed
            **({"skipped_images": result.skipped_images} if result.skipped_images else {}),
            **({"config_changes": result.config_changes} if result.config_changes else {}),
        })
    distributed.barrier()  # rank 0 has written the last checkpoint
    run = load_run(run_dir)
    metrics = distributed.on_main(lambda: evaluate_run(run, progress=progress))
    write_projection(run, progress=progress)
    localization = config.localization
    benchmark_run(run, localization.evaluation_methods,
                  images_per_prototype=localization.images_per_prototype, progress=progress)
    if report:
        log.info("report -> %s", write_report(run, progress=progress).path)
    log.info("%s (%s %.4f, selected stage %d); run directory %s", headline(metrics),
             result.selection_metric, result.best_val_score, result.best_stage + 1, run_dir)
    return metrics
