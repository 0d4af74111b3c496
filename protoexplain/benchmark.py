"""The localization benchmark: every method on the same model, prototypes and images.

:func:`run_benchmark` builds the (image, prototype) pairs once (test images of each
prototype's class, capped per class; for data sets with labelled boxes, images with a box of
that class), decides each prototype's part and each pair's responsible part once
(method-independent, see :mod:`protoexplain.metrics.prototype_parts`) and randomises the
model once, then scores every method with
:func:`protoexplain.metrics.localization.evaluate_localization`.
:func:`write_benchmark` writes ``benchmark.json`` (``{method: {metric: value}}``) and the same
table as ``benchmark.md``; :func:`aggregate_runs` and :func:`aggregate_table` turn several
runs (e.g. training seeds) into mean ± standard deviation, and :func:`compare_across_runs`
says whether one method beats another by more than the spread between runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from protoexplain.atomic_io import atomic_write_json, atomic_write_text
from protoexplain.metrics.localization import (
    LocalizationSettings,
    evaluate_localization,
    needs_noisy_parts,
    noisy_responsible_parts,
)
from protoexplain.metrics.pairs import build_pairs
from protoexplain.metrics.prototype_parts import (
    assign_prototype_parts,
    responsible_parts,
    score_pair_parts,
)
from protoexplain.metrics.registry import is_count, is_model_level, lower_is_better, metric_info
from protoexplain.metrics.sanity import randomized_copy
from prototypes import check_localization_options

Results = dict[str, dict[str, float]]


def has_finding_boxes(dataset: Dataset) -> bool:
    """Whether the data set's items carry labelled finding boxes (``box_labels``, e.g. chest
    X-rays): the benchmark then pairs a prototype only with images that have a box of its
    class."""
    return "box_labels" in dataset[0]


def run_benchmark(model: nn.Module, dataset: Dataset, methods: Mapping[str, Mapping[str, Any]],
                  *, images_per_prototype: int | None = 10,
                  prototypes: Sequence[int] | None = None,
                  settings: LocalizationSettings | None = None,
                  part_definition: str = "occlusion", require_box: bool | None = None,
                  batch_size: int = 16, device: torch.device | str = "cpu", seed: int = 0,
                  progress: bool = True) -> Results:
    """Score each localization method on the same pairs.

    Args:
        model: a trained prototype network (``ProtoPNet`` or ``XProtoNet``), moved to
            ``device``.
        dataset: the test split (items as the data set contract).
        methods: method name (a key of :data:`prototypes.LOCALIZATION_METHODS`) -> options.
        images_per_prototype: test images of its class per prototype (a deterministic subset
            drawn from ``seed``, the same for every prototype of a class); ``None``: all.
        prototypes: prototype indices to evaluate (default: all).
        settings: metric options, see :class:`LocalizationSettings`.
        part_definition: how each prototype's part is decided (``"occlusion"`` or
            ``"latent_peak"``), used when the data set has part masks.
        require_box: pair a prototype only with images that have a box of its class (for the
            box metrics of :mod:`protoexplain.metrics.boxes`); ``None``: when the data set's
            items have labelled boxes (``box_labels``), so that every pair of a multi-label
            set such as ChestX-ray14, where few images have boxes, is scored against one.
        batch_size: pairs per localization call.
        device: where everything runs.
        seed: seeds the image subset, the noise, the tie order and the randomised model.
        progress: show progress bars.
    Returns:
        ``{method: {metric: value}}``.
    """
    if not methods:
        raise ValueError("methods is empty: name at least one localization method")
    for name, options in methods.items():  # refuse a bad option before any method runs
        check_localization_options(name, options)
    settings = settings or LocalizationSettings()
    device = torch.device(device)
    model = model.to(device).eval()
    classes = model.prototype_class_identity.argmax(dim=1)
    if require_box is None:
        require_box = has_finding_boxes(dataset)
    pairs = build_pairs(dataset, classes, prototypes=prototypes,
                        images_per_class=images_per_prototype, seed=seed,
                        require_box=require_box, progress=progress)
    parts = per_pair_parts = noisy_parts = None
    if "part_masks" in pairs.ground_truth:
        scores, visible = score_pair_parts(
            model, pairs, definition=part_definition, score=settings.score,
            fill=settings.fill, batch_size=batch_size, device=device, progress=progress)
        parts = assign_prototype_parts(scores, visible, pairs.prototypes, len(classes))
        per_pair_parts = responsible_parts(scores, visible)
        if needs_noisy_parts(settings, pairs):
            # the oracle's side of stability is the model's: found once for all methods
            noisy_parts = noisy_responsible_parts(
                model, pairs, settings, part_definition=part_definition,
                batch_size=batch_size, device=device, seed=seed, progress=progress)
    randomized = randomized_copy(model, seed=seed).eval() if settings.sanity else None
    return {
        name: evaluate_localization(model, pairs, name, options, prototype_parts=parts,
                                    responsible_parts=per_pair_parts,
                                    noisy_parts=noisy_parts,
                                    part_definition=part_definition,
                                    randomized_model=randomized, settings=settings,
                                    batch_size=batch_size, device=device, seed=seed,
                                    progress=progress)
        for name, options in methods.items()
    }


def _json_value(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _format(metric: str, value: float | None) -> str:
    """A table cell: the metric's format (:data:`protoexplain.metrics.registry.METRICS`,
    ``.3f`` for names outside it); ``n/a`` for a missing or non-finite value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    info = metric_info(metric)
    return format(value, info.format if info is not None else ".3f")


def _label(metric: str) -> str:
    """A row label: the name, then ``↑``/``↓`` for the better direction, or ``(model)`` for a
    model-level value; counts have neither."""
    if is_count(metric):
        return metric
    if is_model_level(metric):
        return f"{metric} (model)"
    return f"{metric} {'↓' if lower_is_better(metric) else '↑'}"


def _metric_order(tables: Mapping[str, Mapping[str, Any]]) -> list[str]:
    order: list[str] = []
    for metrics in tables.values():
        order += [m for m in metrics if m not in order]
    return order


def _markdown(cells: Mapping[str, Mapping[str, str]], metrics: list[str]) -> str:
    methods = list(cells)
    lines = ["| metric | " + " | ".join(methods) + " |",
             "|---|" + "---:|" * len(methods)]
    for metric in metrics:
        row = [cells[method].get(metric, "n/a") for method in methods]
        lines.append(f"| {_label(metric)} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def benchmark_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown table: one row per metric (↑ higher / ↓ lower is better), one column per
    method; metrics a method lacks show ``n/a``."""
    metrics = _metric_order(results)
    cells = {method: {m: _format(m, v) for m, v in values.items()}
             for method, values in results.items()}
    return _markdown(cells, metrics)


def write_benchmark(results: Mapping[str, Mapping[str, float]], out_dir: str | Path
                    ) -> tuple[Path, Path]:
    """Write ``benchmark.json`` (non-finite values as ``null``) and ``benchmark.md`` into
    ``out_dir`` (atomically); returns their paths."""
    out_dir = Path(out_dir)
    json_path, markdown_path = out_dir / "benchmark.json", out_dir / "benchmark.md"
    clean = {method: {m: _json_value(v) for m, v in values.items()}
             for method, values in results.items()}
    atomic_write_json(json_path, clean)
    atomic_write_text(markdown_path, "# Localization benchmark\n\n" + benchmark_table(results)
                             + "\n↑ higher is better, ↓ lower is better; (model): a property "
                               "of the model and pairs, the same for every method; fractions in "
                               "[0, 1]; costs are of the localization alone.\n")
    return json_path, markdown_path


def load_benchmark(path: str | Path) -> Results:
    """Read a ``benchmark.json`` (``null`` becomes NaN)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read benchmark results from {path}: {error}") from None
    return {method: {m: float("nan") if v is None else float(v) for m, v in values.items()}
            for method, values in raw.items()}


def aggregate_runs(runs: Sequence[Mapping[str, Mapping[str, float]]]
                   ) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and sample standard deviation (n - 1) of each method's metrics over runs.

    Returns ``{method: {metric: {"mean", "std", "runs"}}}``; NaN values are left out, and
    ``std`` is NaN when fewer than two runs have the metric.
    """
    if not runs:
        raise ValueError("aggregate_runs needs at least one run")
    methods = list(dict.fromkeys(method for run in runs for method in run))
    aggregated: dict[str, dict[str, dict[str, float]]] = {}
    for method in methods:
        tables = {i: run[method] for i, run in enumerate(runs) if method in run}
        aggregated[method] = {}
        for metric in _metric_order(tables):
            values = torch.tensor([t[metric] for t in tables.values() if metric in t],
                                  dtype=torch.float64)
            values = values[~values.isnan()]
            count = int(values.numel())
            aggregated[method][metric] = {
                "mean": float(values.mean()) if count else float("nan"),
                "std": float(values.std()) if count > 1 else float("nan"),
                "runs": float(count),
            }
    return aggregated


def aggregate_table(aggregated: Mapping[str, Mapping[str, Mapping[str, float]]],
                    metrics: Sequence[str] | None = None) -> str:
    """Markdown table of :func:`aggregate_runs`: ``mean ± std`` per metric and method (just
    the mean when there is no std); ``metrics`` picks and orders the rows (default: all)."""
    cells = {}
    for method, stats_of in aggregated.items():
        cells[method] = {}
        for metric, stats in stats_of.items():
            text = _format(metric, stats["mean"])
            if math.isfinite(stats["std"]) and not is_count(metric):
                text += f" ± {_format(metric, stats['std'])}"
            cells[method][metric] = text
    return _markdown(cells, _metric_order(aggregated) if metrics is None else list(metrics))


def compare_across_runs(runs: Sequence[Mapping[str, Mapping[str, float]]], method: str,
                        baseline: str, metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    """How far ``method`` beats ``baseline`` on each metric over runs (e.g. training seeds).

    Per metric: ``gain``, the difference of the means, signed so that positive is better
    (lower-is-better metrics are negated); ``spread``, the larger of the two methods' sample
    standard deviations over runs; ``worst_gain``, the smallest per-run gain (the same model
    and pairs in each run); ``gain_se``, the standard error of the mean of the per-run gains
    (paired: sample standard deviation of the gains over sqrt(runs)), which says whether the
    gain is there at all, where ``spread`` asks whether it is large; ``wins``, how many runs
    have a positive gain; ``beats``, 1.0 when ``gain > spread`` and ``worst_gain > 0`` (NaN
    with fewer than two runs); ``share``, the method's value as a fraction of the baseline's,
    per run, averaged over the runs where the baseline's is not zero (how close the method
    comes to the baseline, as in "90 % of HDM's relevance"; NaN when there are none).
    """
    comparison: dict[str, dict[str, float]] = {}
    for metric in (m for m in metrics if not is_model_level(m)):
        pairs = [(run[method][metric], run[baseline][metric]) for run in runs
                 if metric in run.get(method, {}) and metric in run.get(baseline, {})]
        values = torch.tensor(pairs, dtype=torch.float64).view(-1, 2)
        values = values[~values.isnan().any(dim=1)]
        if values.shape[0] == 0:
            continue
        sign = -1.0 if lower_is_better(metric) else 1.0
        gains = sign * (values[:, 0] - values[:, 1])
        spread = (float(values.std(dim=0).max()) if values.shape[0] > 1 else float("nan"))
        gain, worst = float(gains.mean()), float(gains.min())
        nonzero = values[:, 1] != 0
        shares = values[nonzero, 0] / values[nonzero, 1]
        comparison[metric] = {
            "gain": gain, "spread": spread, "worst_gain": worst,
            "gain_se": (float(gains.std() / math.sqrt(len(gains))) if len(gains) > 1
                        else float("nan")),
            "wins": float((gains > 0).sum()),
            "beats": float(gain > spread and worst > 0) if math.isfinite(spread) else math.nan,
            "runs": float(values.shape[0]),
            "share": float(shares.mean()) if len(shares) else math.nan,
        }
    return comparison


def comparison_table(comparison: Mapping[str, Mapping[str, float]], method: str,
                     baseline: str) -> str:
    """Markdown table of :func:`compare_across_runs`."""
    lines = [f"| metric | gain of {method} over {baseline} | paired s.e. | seed spread "
             "| worst seed's gain | seeds won | beats by more than the spread "
             f"| {method} as % of {baseline} |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    for metric, row in comparison.items():
        verdict = "n/a" if math.isnan(row["beats"]) else ("yes" if row["beats"] else "no")
        lines.append(f"| {_label(metric)} | {row['gain']:+.3f} | {row['gain_se']:.3f} | "
                     f"{row['spread']:.3f} | {row['worst_gain']:+.3f} | "
                     f"{row['wins']:.0f}/{row['runs']:.0f} | {verdict} | "
                     f"{100 * row.get('share', math.nan):.0f} % |")
    return "\n".join(lines) + "\n"
