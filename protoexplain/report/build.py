"""``protoexplain report``: the run's model as a static site a person reads offline.

The site (``RUN_DIR/report/`` by default):

- ``index.html``: the model overview (test accuracy, per-class accuracy and the confusion
  matrix, or the AUROC of multi-label runs), the localization benchmark as a table and as
  charts (quality per method, quality against cost), the prototypes to look at, the classes
  (searchable by name) and the local explanations;
- ``classes/cNNN.html``, a page per class: each prototype's source image with the receptive
  field, where it lives by each localization method (map and box, and the crop), its k
  nearest training patches localized the same way (the original ProtoPNet's global
  analysis), its last-layer weights, how often it is the top evidence on the test set, its
  flags, and links to the local explanations it appears in; for XProtoNet runs also the
  occurrence maps of the finding's prototypes on test images with the finding's boxes;
- ``local/tNNNNNN.html``, a page per chosen test image: the "this looks like that"
  reasoning (:mod:`protoexplain.report.analysis`), linking each prototype to its global entry;
- ``data.json``: the same numbers for other tools; ``img/`` the tiles; ``assets/`` CSS and JS.

Pages per class and per image, small JPEG tiles with their sizes and ``loading="lazy"`` keep a
CUB-size report (200 classes, 2000 prototypes) quick to open.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from hdm.hooks import evaluation_mode
from protoexplain import distributed
from protoexplain.benchmark import load_benchmark
from protoexplain.data.labels import class_names_of, is_multi_label
from protoexplain.factory import build_dataset, make_loader
from protoexplain.metrics.registry import (
    is_count,
    is_model_level,
    lower_is_better,
    metric_info,
)
from protoexplain.report import charts
from protoexplain.report.analysis import (
    Predictions,
    choose_test_images,
    class_weights,
    decompose_logit,
    duplicate_groups,
    explained_classes,
    finding_boxes,
    ground_truth_mask,
    near_zero_weights,
    predict_test_set,
    region_on_object,
    true_classes,
)
from protoexplain.report.pictures import (
    THUMBNAIL,
    TRUTH_COLOUR,
    crop_tile,
    image_tile,
    map_tile,
    source_tile,
)
from protoexplain.report.site import MARKER, SiteWriter, publish, staging_folder
from protoexplain.run_dir import LoadedRun
from protoexplain.train_masker import attach_masker
from prototypes import (
    Localization,
    ProjectionRecord,
    XProtoNet,
    check_localization_options,
    localize,
    nearest_patches,
)
from prototypes.localization.result import localization_from_maps
from prototypes.localization.upsample import upsample_maps

REPORT_DIR = "report"
FORMAT_VERSION = 1
DEFAULT_TEST_IMAGES = 24
DEFAULT_TOP = 3
DEFAULT_NEAREST = 5
OBJECT_SHARE = 0.5
"""A prototype is flagged when less than this share of its high-activation region (the
pixels its box is drawn around) lies on the object."""
OCCURRENCE_IMAGES = 3
"""Test images per finding whose occurrence maps an XProtoNet report shows."""


@dataclass
class ReportSummary:
    """What :func:`write_report` wrote and how long it took (seconds, wall clock)."""

    path: Path
    prototypes: int
    local_explanations: int
    files: int
    bytes: int
    seconds: float
    localization_seconds: dict[str, float] = field(default_factory=dict)
    localization_pairs: dict[str, int] = field(default_factory=dict)


def report_methods(run: LoadedRun, methods: Sequence[str] | None = None
                   ) -> dict[str, dict[str, Any]]:
    """The localization methods a report shows (default: ``upsample`` and the run's push
    method), each with its configured options."""
    names = list(methods) if methods else ["upsample", run.config.localization.push_method]
    options = run.config.localization.method_options
    chosen = {name: dict(options.get(name, {})) for name in dict.fromkeys(names)}
    attach_masker(chosen, run)  # amortized: the run's trained mask predictor
    return chosen


class Localizer:
    """Runs every method on (image, prototype) pairs in batches, keeping the time each
    method took and the number of pairs it localized.

    Pairs are sorted by image, and each batch loads and passes each of its images once:
    ``upsample`` needs only the similarity maps of a forward pass, so one pass serves every
    prototype shown on that image (the pairs of a report repeat images: a training image is
    the nearest patch of many prototypes). It gives the maps and boxes of
    ``localize(..., method="upsample")``; the other methods localize every pair.
    """

    def __init__(self, model: nn.Module, methods: dict[str, dict[str, Any]], *,
                 batch_size: int, device: torch.device, progress: bool) -> None:
        self.model, self.methods = model, methods
        self.batch_size, self.device, self.progress = batch_size, device, progress
        self.seconds = dict.fromkeys(methods, 0.0)
        self.pairs = dict.fromkeys(methods, 0)

    def run(self, pairs: Sequence[tuple[int, int]], load: Callable[[int], dict[str, Any]],
            desc: str) -> Iterator[tuple[tuple[int, int], dict[str, Any], dict[str, tuple]]]:
        """For each (image, prototype) pair, ``load(image)`` giving the data set item: yields
        ((image, prototype), item, {method: (map (H, W) on the CPU, box [y0, y1, x0, x1])}),
        in the order of the images.

        Under torch.distributed every process must make the same calls: each localizes
        its share of the batches (:func:`protoexplain.distributed.map_batches`, one batch
        per process at a time, so that only that many batches of maps are held), and every
        process gets all results."""
        ordered = sorted(dict.fromkeys(pairs))
        chunks = [ordered[start:start + self.batch_size]
                  for start in range(0, len(ordered), self.batch_size)]
        window = distributed.world_size()
        bar = tqdm(total=len(chunks), desc=desc,
                   disable=not self.progress or not ordered or not distributed.is_main_process())
        for first in range(0, len(chunks), window):
            group = chunks[first:first + window]
            loaded = [{image: load(image) for image in dict.fromkeys(i for i, _ in chunk)}
                      for chunk in group]
            done = distributed.map_batches(
                len(group), lambda b, group=group, loaded=loaded: self._localize(group[b],
                                                                                  loaded[b]))
            for chunk, items, (found, seconds) in zip(group, loaded, done, strict=True):
                for name in self.methods:
                    self.seconds[name] += seconds[name]
                    self.pairs[name] += len(chunk)
                for j, (image, prototype) in enumerate(chunk):
                    yield (image, prototype), items[image], {
                        name: (maps[j], [int(v) for v in boxes[j].tolist()])
                        for name, (maps, boxes) in found.items()}
            bar.update(len(group))
        bar.close()

    def _localize(self, chunk: list[tuple[int, int]], items: dict[int, dict[str, Any]]
                  ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, float]]:
        """Every method's maps (on the CPU) and boxes of one batch of pairs (``items``: the
        data set item of each of its images), and the seconds each method took."""
        unique = list(items)
        stacked = torch.stack([items[image]["image"] for image in unique]).to(self.device)
        rows = torch.tensor([unique.index(image) for image, _ in chunk], device=self.device)
        ids = torch.tensor([prototype for _, prototype in chunk], device=self.device)
        found, seconds = {}, {}
        for name, options in self.methods.items():
            started = time.perf_counter()
            if name == "upsample":
                result = self._upsample(stacked, rows, ids, options)
            else:
                result = localize(self.model, stacked[rows], ids, method=name, **options)
            found[name] = (result.maps.detach().float().cpu(), result.boxes.cpu())
            seconds[name] = time.perf_counter() - started
        return found, seconds

    @torch.no_grad()
    def _upsample(self, images: torch.Tensor, rows: torch.Tensor, ids: torch.Tensor,
                  options: dict[str, Any]) -> Localization:
        """``upsample`` of pairs (``images[rows[b]]``, ``ids[b]``) from one forward pass per
        image (:func:`prototypes.localization.upsample.upsample_localization`)."""
        check_localization_options("upsample", options)
        with evaluation_mode(self.model):
            maps = self.model(images).similarity_maps[rows, ids]
        return localization_from_maps(upsample_maps(maps, tuple(images.shape[-2:])), **options)


def options_percentile(options: dict[str, Any]) -> float:
    """The percentile of a method's box rule (95, the original's, unless configured)."""
    return float(options.get("percentile", 95.0))


def _digits(count: int) -> int:
    return max(3, len(str(max(count - 1, 0))))


def class_page(class_index: int, num_classes: int) -> str:
    """The page of a class, relative to the site root."""
    return f"classes/c{class_index:0{_digits(num_classes)}d}.html"


def prototype_anchor(prototype: int) -> str:
    return f"p{prototype:04d}"


def _clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities become ``None``, tuples lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _clean(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _label_names(item: dict[str, Any], class_names: list[str], multi_label: bool) -> list[str]:
    label = item["label"]
    if multi_label:
        return [class_names[k] for k in (torch.as_tensor(label) > 0.5).nonzero()[:, 0].tolist()]
    return [class_names[int(label)]]


def _all_truth(item: dict[str, Any]) -> list[list[int]]:
    if "box_labels" not in item:
        return []
    return [[round(v) for v in box] for box in item["boxes"].tolist()]


class _Report:
    """The state of one report being written."""

    def __init__(self, run: LoadedRun, writer: SiteWriter, methods: dict[str, dict[str, Any]],
                 *, top_k: int, nearest: int, progress: bool) -> None:
        self.run, self.writer, self.methods = run, writer, methods
        self.top_k, self.nearest, self.progress = top_k, nearest, progress
        config = run.config
        self.push_set = build_dataset(config, "train", augment=False)
        self.class_names = class_names_of(self.push_set)
        self.multi_label = is_multi_label(self.push_set)
        self.noun = "finding" if self.multi_label else "class"
        self.weights = class_weights(run.model).detach().float().cpu()  # (K, P)
        # projection records by prototype; an imported model may have unprojected prototypes
        self.records = {r.prototype: r for r in sorted(run.records, key=lambda r: r.prototype)}
        self.classes = [int(k) for k in run.model.prototype_classes.tolist()]
        self.localizer = Localizer(run.model, methods, batch_size=config.data.eval_batch_size,
                                   device=run.device, progress=progress)

    @functools.cached_property
    def test_set(self) -> Dataset:
        return build_dataset(self.run.config, "test", augment=False)

    # ----------------------------------------------------------------- global view
    def prototypes(self, test: Predictions) -> list[dict[str, Any]]:
        """One entry per prototype: source, localizations, nearest patches, weights,
        evidence and flags."""
        count = len(self.classes)
        evidence = torch.bincount(test.top_evidence, minlength=count)
        complete = len(self.records) == count
        duplicates = duplicate_groups(self.run.model, list(self.records.values()) if complete
                                      else None)
        zero = near_zero_weights(self.weights, torch.tensor(self.classes))
        entries = []
        for p, k in enumerate(self.classes):
            record = self.records.get(p)
            entries.append({
                "prototype": p, "class_index": k, "class_name": self.class_names[k],
                "page": f"{class_page(k, len(self.class_names))}#{prototype_anchor(p)}",
                "source": None if record is None else {
                    "sample_index": record.sample_index,
                    "latent_position": list(record.latent_position),
                    "distance": record.distance, "similarity": record.similarity,
                    "receptive_field_box": list(record.receptive_field_box)},
                "localization": {},
                "weights": [float(v) for v in self.weights[:, p].tolist()],
                "own_weight": float(self.weights[k, p]),
                "top_evidence": {"count": int(evidence[p]),
                                 "share": float(evidence[p]) / max(1, len(test.labels))},
                "nearest": [], "flags": [], "local": []})
        self._sources(entries)
        self._nearest(entries)
        for group in duplicates or []:
            for p in group:
                others = [q for q in group if q != p]
                entries[p]["flags"].append({
                    "kind": "duplicate", "prototypes": others,
                    "text": "duplicate of " + ", ".join(f"p{q}" for q in others)
                            + " (the same source patch, or a near-identical vector)"})
        for p, flagged in enumerate(zero):
            if flagged:
                entries[p]["flags"].append({
                    "kind": "near_zero_weight",
                    "text": f"near-zero weight to its own {self.noun} "
                            f"({entries[p]['own_weight']:.3g})"})
        for entry in entries:
            for name, found in entry["localization"].items():
                share = found.get("object_share")
                if share is not None and share < OBJECT_SHARE:
                    entry["flags"].append({
                        "kind": "outside_object", "method": name, "share": share,
                        "text": f"{name}: only {share:.0%} of its high-activation region "
                                "lies on the object"})
        self.duplicates = duplicates
        return entries

    def _sources(self, entries: Any, records: list[ProjectionRecord] | None = None) -> None:
        """Localize each prototype in its source image and write its tiles into
        ``entries[prototype]`` (a list or a dict by prototype id)."""
        by_id = {record.prototype: record for record in records or self.records.values()}
        pairs = [(record.sample_index, p) for p, record in by_id.items()]
        for (_, p), item, found in self.localizer.run(pairs, self.push_set.__getitem__,
                                                      "report: prototype sources"):
            record = by_id[p]
            k = record.class_index
            entry = entries[p]
            truth = finding_boxes(item, k)
            entry["source"]["truth_boxes"] = truth
            entry["source"]["tile"] = self.writer.tile(
                f"img/p/p{p:04d}_source.jpg",
                source_tile(item["image"], record.receptive_field_box, truth))
            mask = ground_truth_mask(item, k)
            for name, (heatmap, box) in found.items():
                entry["localization"][name] = {
                    "box": box,
                    "object_share": None if mask is None else region_on_object(
                        heatmap, mask, options_percentile(self.methods[name])),
                    "tile": self.writer.tile(f"img/p/p{p:04d}_{name}.jpg",
                                             map_tile(item["image"], heatmap, box, truth)),
                    "crop": self.writer.tile(f"img/p/p{p:04d}_{name}_crop.jpg",
                                             crop_tile(item["image"], box))}

    def _nearest(self, entries: list[dict[str, Any]]) -> None:
        if self.nearest < 1:
            return
        config = self.run.config
        found = nearest_patches(self.run.model,
                                make_loader(self.push_set, config.data.eval_batch_size, config),
                                self.nearest, progress=self.progress).to("cpu")
        ranks = {(int(found.sample_indices[p, rank]), p): rank
                 for p in range(len(entries)) for rank in range(found.k)}
        for (sample, p), item, maps in self.localizer.run(list(ranks), self.push_set.__getitem__,
                                                          "report: nearest patches"):
            rank = ranks[sample, p]
            truth = finding_boxes(item, entries[p]["class_index"])
            entries[p]["nearest"].append({
                "rank": rank + 1, "sample_index": int(found.sample_indices[p, rank]),
                "labels": _label_names(item, self.class_names, self.multi_label),
                "distance": float(found.distances[p, rank]),
                "latent_position": [int(v) for v in found.positions[p, rank].tolist()],
                "localization": {
                    name: {"box": box, "tile": self.writer.tile(
                        f"img/p/p{p:04d}_n{rank + 1}_{name}.jpg",
                        map_tile(item["image"], heatmap, box, truth))}
                    for name, (heatmap, box) in maps.items()}})
        for entry in entries:
            entry["nearest"].sort(key=lambda neighbour: neighbour["rank"])

    # ----------------------------------------------------------------- local view
    def local(self, test: Predictions, count: int) -> list[dict[str, Any]]:
        """The local explanations of the informative test images (see
        :func:`choose_test_images`)."""
        chosen = choose_test_images(test, count)
        if not chosen:
            return []
        indices = [i for i, _ in chosen]
        similarities, logits = self._forward([self.test_set[i]["image"] for i in indices])
        entries = []
        for row, (index, why) in enumerate(chosen):
            explanations = []
            for position, k in enumerate(explained_classes(test, index)):
                decomposed = decompose_logit(similarities[row], self.weights, logits[row, k],
                                             k, self.top_k)
                role = "predicted" if position == 0 else "true"
                explanations.append(self._explanation(decomposed, role))
            predicted = int(logits[row].argmax())
            probabilities = logits[row].sigmoid() if self.multi_label \
                else logits[row].softmax(dim=0)
            entries.append({
                "id": f"t{index:06d}", "image": f"test split, sample {index}",
                "split": "test", "sample_index": index, "why": why,
                "page": f"local/t{index:06d}.html",
                "true_classes": [self.class_names[k] for k in true_classes(test, index)],
                "predicted_class": self.class_names[predicted],
                "probability": float(probabilities[predicted]),
                "correct": bool(test.correct[index]),
                "logits": [float(v) for v in logits[row].tolist()],
                "probabilities": [float(v) for v in probabilities.tolist()],
                "explanations": explanations})
        self._local_tiles(entries, self.test_set)
        return entries

    @torch.no_grad()
    def _forward(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Similarities (N, P) and logits (N, K) of images, on the CPU in float32."""
        similarities, logits = [], []
        size = self.run.config.data.eval_batch_size
        for start in range(0, len(images), size):
            output = self.run.model(torch.stack(images[start:start + size]).to(self.run.device))
            similarities.append(output.similarities.float().cpu())
            logits.append(output.logits.float().cpu())
        return torch.cat(similarities), torch.cat(logits)

    def _explanation(self, decomposed: dict[str, Any], role: str) -> dict[str, Any]:
        k = decomposed["class"]
        for row in decomposed["prototypes"]:
            row["class_name"] = self.class_names[self.classes[row["prototype"]]]
            row["localization"] = {}
        return {"role": role, "class_name": self.class_names[k],
                "others": self.weights.shape[1] - len(decomposed["prototypes"]), **decomposed}

    def _local_tiles(self, entries: list[dict[str, Any]], dataset: Any,
                     localized: dict[tuple[int, int], dict[str, tuple]] | None = None) -> None:
        """The tile of each image and of each shown (image, prototype) pair per method;
        ``localized`` holds pairs (entry position, prototype) already localized."""
        localized = dict(localized or {})
        pairs = list(dict.fromkeys((n, row["prototype"]) for n, entry in enumerate(entries)
                                   for explanation in entry["explanations"]
                                   for row in explanation["prototypes"]))
        for entry in entries:
            item = dataset[entry["sample_index"]]
            entry["tile"] = self.writer.tile(
                f"img/t/{entry['id']}.jpg",
                image_tile(item["image"], boxes=[(box, TRUTH_COLOUR)
                                                 for box in _all_truth(item)],
                           target=2 * THUMBNAIL))

        def load(n: int) -> dict[str, Any]:
            return dataset[entries[n]["sample_index"]]

        def draw(n: int, p: int, item: dict[str, Any], maps: dict[str, tuple]) -> None:
            truth = finding_boxes(item, self.classes[p])
            found[n, p] = {name: {"box": [int(v) for v in box], "tile": self.writer.tile(
                f"img/t/{entries[n]['id']}_p{p:04d}_{name}.jpg",
                map_tile(item["image"], heatmap, box, truth))}
                for name, (heatmap, box) in maps.items()}

        found: dict[tuple[int, int], dict[str, Any]] = {}
        missing = [pair for pair in pairs
                   if not set(self.methods) <= set(localized.get(pair, {}))]
        for (n, p), item, maps in self.localizer.run(missing, load, "report: test images"):
            draw(n, p, item, maps)
        for n, p in pairs:
            if (n, p) not in found:
                maps = localized[n, p]
                draw(n, p, load(n), {name: maps[name] for name in self.methods})
        for n, entry in enumerate(entries):
            for explanation in entry["explanations"]:
                for row in explanation["prototypes"]:
                    row["localization"] = found[n, row["prototype"]]

    # ----------------------------------------------------------------- XProtoNet
    def occurrences(self, test: Predictions) -> dict[int, dict[str, Any]]:
        """Per finding: a few positive test images (those with the finding's boxes first,
        among its first positives) and the upsampled occurrence map of each of the finding's
        prototypes on them."""
        if not isinstance(self.run.model, XProtoNet):
            return {}
        per_class: dict[int, list[int]] = {}
        items: dict[int, dict[str, Any]] = {}
        for k in range(len(self.class_names)):
            positive = (test.labels[:, k] > 0.5).nonzero()[:, 0].tolist()[:10 * OCCURRENCE_IMAGES]
            for i in positive:
                items.setdefault(i, self.test_set[i])
            positive.sort(key=lambda i: (not finding_boxes(items[i], k), i))
            per_class[k] = positive[:OCCURRENCE_IMAGES]
        keys = {(i, p): k for k, images in per_class.items() for i in images
                for p in range(len(self.classes)) if self.classes[p] == k}
        occurrence = Localizer(self.run.model, {"upsample": self.methods.get("upsample", {})},
                               batch_size=self.run.config.data.eval_batch_size,
                               device=self.run.device, progress=self.progress)
        result = {k: {"images": [{"sample_index": i, "tiles": {}} for i in images]}
                  for k, images in per_class.items()}

        for (i, p), item, maps in occurrence.run(list(keys), items.__getitem__,
                                                 "report: occurrence maps"):
            k = keys[i, p]
            heatmap, box = maps["upsample"]
            row = next(r for r in result[k]["images"] if r["sample_index"] == i)
            row["tiles"][p] = self.writer.tile(
                f"img/o/c{k:03d}_t{i:06d}_p{p:04d}.jpg",
                map_tile(item["image"], heatmap, box, finding_boxes(item, k)))
            row["boxes"] = finding_boxes(item, k)
        return result

    # ----------------------------------------------------------------- pages
    def overview_context(self, overview: dict[str, Any]) -> dict[str, Any]:
        """Charts of the overview, written to ``img/charts/``."""
        root = self.writer.root
        names = self.class_names
        if self.multi_label:
            values = [overview["per_class_auroc"][n] for n in names]
            per_class = self.writer.chart("img/charts/per_class.svg", charts.per_class_chart(
                root / "img/charts/per_class.svg", names, values, "test AUROC"))
            return {"per_class_chart": per_class, "confusion_chart": None}
        per_class = self.writer.chart("img/charts/per_class.svg", charts.per_class_chart(
            root / "img/charts/per_class.svg", names, overview["per_class_accuracy"],
            "test accuracy"))
        confusion = self.writer.chart("img/charts/confusion.svg", charts.confusion_chart(
            root / "img/charts/confusion.svg", overview["confusion_matrix"], names))
        return {"per_class_chart": per_class, "confusion_chart": confusion}

    def benchmark_context(self, benchmark: dict[str, dict[str, float]] | None
                          ) -> dict[str, Any] | None:
        if not benchmark:
            return None
        root = self.writer.root
        quality = self.writer.chart("img/charts/quality.svg", charts.quality_chart(
            root / "img/charts/quality.svg", benchmark))
        cost = self.writer.chart("img/charts/cost.svg", charts.cost_chart(
            root / "img/charts/cost.svg", benchmark))
        return {"methods": list(benchmark), "rows": benchmark_rows(benchmark),
                "quality_chart": quality, "cost_chart": cost}


def benchmark_rows(benchmark: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """The benchmark as table rows: a label with ↑/↓ (``(model)`` for a model-level value),
    one formatted cell per method, the best cell of each comparable row marked."""
    metrics = list(dict.fromkeys(m for row in benchmark.values() for m in row))
    methods = list(benchmark)
    rows = []
    for metric in metrics:
        info = metric_info(metric)
        values = [benchmark[method].get(metric) for method in methods]
        finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        comparable = (info is not None and info.direction is not None
                      and not is_model_level(metric) and len(finite) > 1
                      and len(set(finite)) > 1)
        best = (min(finite) if lower_is_better(metric) else max(finite)) if comparable else None
        if is_count(metric):
            label, direction = metric, ""
        elif is_model_level(metric):
            label, direction = metric, "(model)"
        else:
            label, direction = metric, "↓" if lower_is_better(metric) else "↑"
        spec = info.format if info is not None else ".3f"
        rows.append({"metric": label, "direction": direction,
                     "description": info.description if info is not None else "",
                     "cells": [{"text": "n/a" if not isinstance(v, (int, float))
                                or not math.isfinite(v) else format(v, spec),
                                "best": best is not None and v == best} for v in values]})
    return rows


def model_summary(run: LoadedRun, class_names: list[str]) -> dict[str, Any]:
    """Architecture, trunk, prototype count, classes and image size of a run's model."""
    config = run.config.model
    return {"architecture": config.architecture, "backbone": config.backbone,
            "prototypes": len(run.records), "prototypes_per_class": config.prototypes_per_class,
            "classes": len(class_names),
            "image_size": [int(v) for v in run.model.image_size],
            "data_set": run.config.data.dataset}


def write_report(run: LoadedRun, out: str | Path | None = None, *,
                 methods: Sequence[str] | None = None,
                 test_images: int = DEFAULT_TEST_IMAGES, top_k: int = DEFAULT_TOP,
                 nearest: int = DEFAULT_NEAREST, progress: bool = True) -> ReportSummary:
    """Write the report of a run as a static site.

    Args:
        run: the loaded run (its model in eval mode).
        out: the site's folder (default ``RUN_DIR/report``); an earlier report there is
            replaced once the new one is complete; any other existing, non-empty folder is
            refused.
        methods: localization methods shown (default: ``upsample`` and the push method).
        test_images: how many test images get a local explanation.
        top_k: prototypes shown per explained logit.
        nearest: nearest training patches shown per prototype.
        progress: show progress bars.

    Under torchrun every process calls this: the localizations are shared among them
    (:class:`Localizer`) and rank 0 alone writes the site.

    Returns:
        A :class:`ReportSummary` (``path`` is ``index.html``).
    """
    started = time.perf_counter()
    out = Path(out) if out is not None else run.path / REPORT_DIR
    main = distributed.is_main_process()
    # under torchrun the other processes share the localization and discard their pages
    staging = staging_folder(out) if main else Path(tempfile.mkdtemp(prefix="report-"))
    try:
        writer = SiteWriter(staging)
        report = _Report(run, writer, report_methods(run, methods), top_k=top_k,
                         nearest=nearest, progress=progress and main)
        summary = _write(report, run, test_images)
        if main:
            publish(staging, out)
        else:
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ReportSummary(path=out / "index.html", prototypes=len(run.records),
                         local_explanations=summary, files=writer.files, bytes=writer.bytes,
                         seconds=time.perf_counter() - started,
                         localization_seconds=dict(report.localizer.seconds),
                         localization_pairs=dict(report.localizer.pairs))


def _write(report: _Report, run: LoadedRun, test_images: int) -> int:
    """Compute everything and write the pages; returns the number of local explanations."""
    from protoexplain.report.analysis import overview as overview_of

    writer = report.writer
    config = run.config
    test = predict_test_set(run.model,
                            make_loader(report.test_set, config.data.eval_batch_size, config),
                            multi_label=report.multi_label, device=run.device,
                            progress=report.progress)
    overview = overview_of(test, report.class_names)
    prototypes = report.prototypes(test)
    local = report.local(test, test_images)
    for entry in local:
        for explanation in entry["explanations"]:
            for row in explanation["prototypes"]:
                backlinks = prototypes[row["prototype"]]["local"]
                if entry["page"] not in backlinks:
                    backlinks.append(entry["page"])
    occurrences = report.occurrences(test)
    benchmark_path = run.path / "benchmark.json"
    benchmark = load_benchmark(benchmark_path) if benchmark_path.is_file() else None
    names = report.class_names
    common = {"run_name": run.path.name, "noun": report.noun,
              "nouns": "findings" if report.multi_label else "classes",
              "methods": list(report.methods), "multi_label": report.multi_label,
              "class_names": names,
              "class_pages": [class_page(k, len(names)) for k in range(len(names))],
              "model": model_summary(run, names), "top_k": report.top_k}
    writer.assets()
    flagged = [entry for entry in prototypes if entry["flags"]]
    classes = []
    for k, name in enumerate(names):
        own = [entry for entry in prototypes if entry["class_index"] == k]
        quality = (overview["per_class_auroc"][name] if report.multi_label
                   else overview["per_class_accuracy"][k])
        classes.append({"index": k, "name": name, "page": class_page(k, len(names)),
                        "quality": quality, "prototypes": own,
                        "flagged": sum(1 for entry in own if entry["flags"]),
                        "local": [e for e in local if name in e["true_classes"]]})
    writer.page("index.html", "index.html", root="", home="index.html",
                title=f"protoexplain report: {run.path.name}", overview=overview,
                charts=report.overview_context(overview),
                benchmark=report.benchmark_context(benchmark), flagged=flagged,
                classes=classes, local=local,
                duplicates_checked=report.duplicates is not None, **common)
    for k, entry in enumerate(classes):
        writer.page(entry["page"], "class.html", root="../", home="../index.html",
                    title=f"{report.noun} {entry['name']}", entry=entry,
                    previous=classes[k - 1] if k > 0 else None,
                    next=classes[k + 1] if k + 1 < len(classes) else None,
                    occurrence=occurrences.get(k), **common)
    links = {entry["prototype"]: "../" + entry["page"] for entry in prototypes}
    sources = {entry["prototype"]: entry for entry in prototypes if entry["source"]}
    for entry in local:
        writer.page(entry["page"], "local.html", root="../", title=f"why {entry['image']}",
                    entry=entry, links=links, sources=sources, home="../index.html",
                    **common)
    writer.json("data.json", _clean({
        "generator": MARKER, "format": FORMAT_VERSION, "run": run.path.name,
        "model": common["model"], "classes": names, "multi_label": report.multi_label,
        "methods": list(report.methods), "overview": overview, "benchmark": benchmark,
        "duplicates": report.duplicates, "prototypes": prototypes, "local": local}))
    return len(local)


EXPLANATION_FILES = "explanation_files"
"""The folder, beside the pages of ``protoexplain explain``, holding their tiles and assets."""


def _tile_names(stems: Sequence[str]) -> list[str]:
    """File-name-safe, distinct names for the tiles of each page (letters, digits, ``._-``)."""
    names: list[str] = []
    for stem in stems:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "image"
        base, number = name, 1
        while name in names:
            number += 1
            name = f"{base}-{number}"
        names.append(name)
    return names


def write_explanation_pages(run: LoadedRun, images: torch.Tensor, names: Sequence[str],
                            out_dir: str | Path, *, methods: Sequence[str] | None = None,
                            top_k: int = DEFAULT_TOP,
                            localized: dict[tuple[int, int], dict[str, tuple]] | None = None,
                            stems: Sequence[str] | None = None,
                            progress: bool = False) -> list[tuple[Path, dict[str, Any]]]:
    """The report's local view for a person's own images: ``OUT/<stem>_explanation.html`` per
    image (beside ``explain``'s ``<stem>_explanation.png``), its tiles and the site's assets
    under ``OUT/explanation_files/``.

    Args:
        run: the loaded run.
        images: (N, 3, H, W) in [0, 1] at the model's input size.
        names: the images' file names (their stems name the pages).
        out_dir: where the pages go.
        methods: localization methods shown (default: ``upsample`` and the push method).
        top_k: prototypes shown for the predicted class.
        localized: (image position, prototype) -> {method: (map (H, W), box)} already
            computed, so that they are not localized again.
        stems: the pages' names, ``<stem>_explanation.html`` (default: the images' file
            names without their ending).
        progress: show progress bars.

    Returns:
        Per image, the page's path and its local explanation (the entries of a report's
        ``data.json``). A prototype links to its entry in ``RUN_DIR/report`` when that
        report exists.
    """
    out_dir = Path(out_dir)
    writer = SiteWriter(out_dir / EXPLANATION_FILES)
    report = _Report(run, writer, report_methods(run, methods), top_k=top_k, nearest=0,
                     progress=progress)
    images = images.detach().cpu()
    stems = list(stems) if stems is not None else [Path(name).stem for name in names]
    tile_names = _tile_names(stems)
    similarities, logits = report._forward(list(images))
    entries = []
    for n, name in enumerate(names):
        k = int(logits[n].argmax())
        probabilities = logits[n].sigmoid() if report.multi_label else logits[n].softmax(dim=0)
        decomposed = decompose_logit(similarities[n], report.weights, logits[n, k], k, top_k)
        entries.append({
            "id": tile_names[n], "image": str(name), "sample_index": n, "why": None,
            "true_classes": None, "correct": None, "predicted_class": report.class_names[k],
            "probability": float(probabilities[k]),
            "logits": [float(v) for v in logits[n].tolist()],
            "probabilities": [float(v) for v in probabilities.tolist()],
            "explanations": [report._explanation(decomposed, "predicted")]})
    report._local_tiles(entries, [{"image": image} for image in images], localized)
    shown = sorted({row["prototype"] for entry in entries for row in
                    entry["explanations"][0]["prototypes"]})
    sources = {p: {"source": {}, "localization": {}, "class_index": report.classes[p]}
               for p in shown if p in report.records}
    if sources:
        report._sources(sources, [report.records[p] for p in sources])
    site = run.path / REPORT_DIR
    links: dict[int, str] = {}
    home = None
    if (site / "index.html").is_file():
        home = os.path.relpath(site / "index.html", out_dir)
        for p in shown:
            page = class_page(report.classes[p], len(report.class_names))
            links[p] = f"{os.path.relpath(site / page, out_dir)}#{prototype_anchor(p)}"
    writer.assets()
    common = {"run_name": run.path.name, "noun": report.noun,
              "nouns": "findings" if report.multi_label else "classes",
              "methods": list(report.methods), "class_names": report.class_names}
    pages = []
    for stem, entry in zip(stems, entries, strict=True):
        path = writer.page(f"../{stem}_explanation.html", "local.html",
                           root=f"{EXPLANATION_FILES}/", home=home,
                           title=f"why {Path(entry['image']).name}", entry=entry, links=links,
                           sources=sources, **common)
        pages.append((path.resolve(), _clean(entry)))
    return pages
