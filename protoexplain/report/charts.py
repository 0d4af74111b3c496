"""The report's charts, drawn with matplotlib as SVG files.

matplotlib's object-oriented API (a :class:`~matplotlib.figure.Figure` per chart, no pyplot
state, no GUI backend) is used so that reports can be written from any thread or process;
SVG keeps text sharp at any zoom and small, and the files are made reproducible (no date, a
fixed id salt).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullLocator

from protoexplain.metrics.registry import lower_is_better, metric_info

SVG_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "protoexplain", "font.size": 9}


def _save(figure: Figure, path: Path) -> int:
    """Write ``figure`` as SVG; returns the file's size in bytes."""
    buffer = io.StringIO()
    with matplotlib.rc_context(SVG_STYLE):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    path.parent.mkdir(parents=True, exist_ok=True)
    data = buffer.getvalue().encode()
    path.write_bytes(data)
    return len(data)


def _arrow(metric: str) -> str:
    info = metric_info(metric)
    if info is None or info.direction is None:
        return ""
    return " ↓" if lower_is_better(metric) else " ↑"


def per_class_chart(path: Path, names: Sequence[str], values: Sequence[float | None],
                    label: str) -> int:
    """Each class's value (accuracy or AUROC) as a horizontal bar; with more than 40 classes,
    the values sorted from best to worst, without names (the class table has them)."""
    known = [(name, v) for name, v in zip(names, values, strict=True) if v is not None]
    with matplotlib.rc_context(SVG_STYLE):
        if len(names) <= 40:
            figure = Figure(figsize=(5.0, 0.9 + 0.22 * len(known)))
            axes = figure.subplots()
            axes.barh(range(len(known)), [v for _, v in known], color="#4c72b0")
            axes.set_yticks(range(len(known)), [n for n, _ in known])
            axes.invert_yaxis()
            for row, (_, value) in enumerate(known):
                axes.text(min(value, 1.0) + 0.01, row, f"{value:.2f}", va="center", fontsize=8)
            axes.set_xlim(0, 1.12)
            axes.set_xlabel(label)
        else:
            figure = Figure(figsize=(6.0, 2.6))
            axes = figure.subplots()
            ordered = sorted((v for _, v in known), reverse=True)
            axes.bar(range(len(ordered)), ordered, width=1.0, color="#4c72b0")
            axes.set_ylim(0, 1)
            axes.set_ylabel(label)
            axes.set_xlabel(f"{len(ordered)} classes, best to worst")
        axes.spines[["top", "right"]].set_visible(False)
        return _save(figure, path)


def confusion_chart(path: Path, matrix: Sequence[Sequence[int]], names: Sequence[str]) -> int:
    """The confusion matrix (rows: true class, columns: predicted), each row as shares of
    its images; counts written in the cells when there are at most 12 classes."""
    count = len(names)
    with matplotlib.rc_context(SVG_STYLE):
        side = min(9.0, 2.2 + 0.32 * count)
        figure = Figure(figsize=(side + 1.0, side))
        axes = figure.subplots()
        shares = [[v / max(1, sum(row)) for v in row] for row in matrix]
        image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        if count <= 40:
            axes.set_xticks(range(count), names, rotation=90)
            axes.set_yticks(range(count), names)
        if count <= 12:
            for i, row in enumerate(matrix):
                for j, value in enumerate(row):
                    axes.text(j, i, str(value), ha="center", va="center", fontsize=8,
                              color="white" if shares[i][j] > 0.5 else "black")
        axes.set_xlabel("predicted class")
        axes.set_ylabel("true class")
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the row")
        return _save(figure, path)


def quality_metrics(benchmark: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The benchmark's quality metrics compared between methods (not the model-level ones),
    in the registry's order, that have a finite value for some method."""
    names = dict.fromkeys(metric for row in benchmark.values() for metric in row)
    chosen = []
    for name in names:
        info = metric_info(name)
        if info is None or info.kind != "quality" or info.model_level or "@" in name:
            continue
        if any(_finite(row.get(name)) for row in benchmark.values()):
            chosen.append(name)
    return chosen


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def quality_chart(path: Path, benchmark: Mapping[str, Mapping[str, float]]) -> int | None:
    """Each quality metric as a group of bars, one per method (arrows: which way is better).
    ``None`` (nothing written) without a quality metric."""
    metrics = quality_metrics(benchmark)
    if not metrics:
        return None
    methods = list(benchmark)
    with matplotlib.rc_context(SVG_STYLE):
        figure = Figure(figsize=(6.5, 0.8 + 0.18 * len(metrics) * max(2, len(methods))))
        axes = figure.subplots()
        height = 0.8 / len(methods)
        for m, method in enumerate(methods):
            values = [benchmark[method].get(metric) for metric in metrics]
            positions = [i + (m - (len(methods) - 1) / 2) * height for i in range(len(metrics))]
            axes.barh(positions, [v if _finite(v) else 0.0 for v in values], height=height,
                      label=method)
        axes.set_yticks(range(len(metrics)), [m + _arrow(m) for m in metrics])
        axes.invert_yaxis()
        axes.set_xlabel("value (arrow: the better direction)")
        axes.legend(loc="lower right", fontsize=8)
        axes.spines[["top", "right"]].set_visible(False)
        return _save(figure, path)


COST_PANELS = 6
"""The quality metrics (the first ones, in the registry's order) drawn against cost."""


def cost_chart(path: Path, benchmark: Mapping[str, Mapping[str, float]]) -> int | None:
    """Quality against cost: per quality metric (the first :data:`COST_PANELS`), one point
    per method at its seconds per (image, prototype) pair (log scale). ``None`` without costs
    or quality metrics."""
    metrics = quality_metrics(benchmark)[:COST_PANELS]
    methods = [m for m in benchmark if _finite(benchmark[m].get("seconds_per_pair"))
               and benchmark[m]["seconds_per_pair"] > 0]
    if not metrics or not methods:
        return None
    costs = [benchmark[m]["seconds_per_pair"] for m in methods]
    low, high = min(costs), max(costs)
    columns = min(3, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    with matplotlib.rc_context(SVG_STYLE):
        figure = Figure(figsize=(2.6 * columns, 2.2 * rows))
        grid = figure.subplots(rows, columns, squeeze=False)
        for position, metric in enumerate(metrics):
            axes = grid[position // columns][position % columns]
            for method in methods:
                value = benchmark[method].get(metric)
                if not _finite(value):
                    continue
                cost = benchmark[method]["seconds_per_pair"]
                axes.scatter([cost], [value], s=18)
                axes.annotate(method, (cost, value), textcoords="offset points",
                              xytext=(4, 3), fontsize=7)
            axes.set_xscale("log")
            axes.set_xlim(low / 3, high * 3)
            axes.xaxis.set_major_locator(LogLocator(numticks=4))
            axes.xaxis.set_minor_locator(NullLocator())
            axes.set_title(metric + _arrow(metric), fontsize=8)
            axes.tick_params(labelsize=7)
            axes.margins(y=0.2)
        for position in range(len(metrics), rows * columns):
            grid[position // columns][position % columns].set_visible(False)
        figure.supxlabel("seconds per (image, prototype) pair", fontsize=8)
        figure.subplots_adjust(hspace=0.6, wspace=0.35)
        return _save(figure, path)
