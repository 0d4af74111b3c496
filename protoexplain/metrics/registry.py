"""Every metric of the localization benchmark by name: what it measures, which way is better,
whether it belongs to the model rather than the method, and how a table prints it.

:data:`METRICS` is the one list of the names :func:`protoexplain.metrics.evaluate_localization`
returns; tables (:mod:`protoexplain.benchmark`) and studies (``benchmarks/``) read direction,
level and format from it. Per-fraction values (``relevance@5%``, ``fidelity@10%``) are
described by their base name (:func:`metric_info`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["higher", "lower"]
Kind = Literal["quality", "sanity", "cost", "count"]


@dataclass(frozen=True)
class Metric:
    """What one benchmark metric is.

    direction: ``"higher"`` or ``"lower"`` is better; ``None`` for counts, which have no
        better side.
    kind: ``"quality"`` (how well a map localizes or explains), ``"sanity"`` (the
        model-randomisation check), ``"cost"`` (of the localization alone) or ``"count"``.
    model_level: a property of the model and the pairs, computed once and repeated in every
        method's row; never compared between methods.
    format: the format spec of a table cell.
    description: one line.
    """

    direction: Direction | None
    kind: Kind
    description: str
    model_level: bool = False
    format: str = ".3f"


METRICS: dict[str, Metric] = {
    "consistency": Metric(
        "higher", "quality", "share of prototypes whose peak box holds one part's keypoint in at "
        "least 80% of the images showing that part (Huang et al. 2023)"),
    "responsible_part_hit": Metric(
        "higher", "quality", "share of pairs whose peak box holds the keypoint of the part the "
        "prototype relies on in that image"),
    "stability": Metric(
        "higher", "quality", "share of a prototype's pairs whose part hits stay the same on a "
        "noisy copy of the image, mean over prototypes (Huang et al. 2023)"),
    "relevance": Metric(
        "higher", "quality", "share of the map's top pixels on the object, mean over fractions "
        "(Xu-Darme et al. 2023)"),
    "fidelity": Metric(
        "higher", "quality", "relative drop of the pair's score when the map's top pixels are "
        "removed, mean over fractions (Xu-Darme et al. 2023)"),
    "energy_object": Metric(
        "higher", "quality", "share of the map's energy on the object (energy-based pointing "
        "game)"),
    "pointing_object": Metric(
        "higher", "quality", "share of maps whose peak is on the object, with a pixel tolerance "
        "(pointing game)"),
    "energy_part": Metric(
        "higher", "quality", "share of the map's energy on the prototype's part"),
    "pointing_part": Metric(
        "higher", "quality", "share of maps whose peak is on the prototype's part"),
    "iou_part": Metric(
        "higher", "quality", "IoU of the method's box with the box of the prototype's part"),
    "energy_box": Metric(
        "higher", "quality", "share of the map's energy in the labelled boxes of the "
        "prototype's class"),
    "pointing_box": Metric(
        "higher", "quality", "share of maps whose peak is in a labelled box of the prototype's "
        "class"),
    "iou_box": Metric(
        "higher", "quality", "best IoU of the method's box with a labelled box of the "
        "prototype's class"),
    "deletion": Metric(
        "lower", "quality", "area under the pair's relative score as pixels are removed in the "
        "map's order (RISE protocol)"),
    "insertion": Metric(
        "higher", "quality", "area under the pair's relative score as pixels are inserted in "
        "the map's order (RISE protocol)"),
    "oracle_consistency": Metric(
        "higher", "quality", "Huang's consistency of an oracle peaked on the relied-on part's "
        "keypoint: how part-consistent the prototypes are", model_level=True),
    "oracle_stability": Metric(
        "higher", "quality", "Huang's stability of that oracle under the noise: how stable the "
        "prototypes are", model_level=True),
    "sanity_spearman": Metric(
        "lower", "sanity", "rank correlation of the maps of the trained and of a randomised "
        "model (Adebayo et al. 2018)"),
    "sanity_ssim": Metric(
        "lower", "sanity", "structural similarity of the maps of the trained and of a "
        "randomised model"),
    "seconds_per_pair": Metric(
        "lower", "cost", "wall-clock seconds of the localization per pair", format=".3g"),
    "forward_passes_per_pair": Metric(
        "lower", "cost", "images passed forward through the model per pair", format=".1f"),
    "backward_passes_per_pair": Metric(
        "lower", "cost", "images whose gradients went back through the model per pair",
        format=".1f"),
    "masker_training_seconds": Metric(
        "lower", "cost", "seconds spent training the amortized mask predictor (once per "
        "model)", format=".3g"),
    "masker_training_passes": Metric(
        "lower", "cost", "images passed forward and backward through the model to train the "
        "amortized mask predictor", format=".3g"),
    "break_even_pairs": Metric(
        "lower", "cost", "pairs after which the predictor's training time is paid back by "
        "its saving per pair against HDM", format=".3g"),
    "break_even_pairs_by_passes": Metric(
        "lower", "cost", "the same in model passes", format=".3g"),
    "pairs": Metric(None, "count", "(image, prototype) pairs scored", format=".0f"),
    "prototypes": Metric(None, "count", "prototypes with at least one pair", format=".0f"),
}
"""Metric name -> :class:`Metric`, quality metrics first (those compared between methods,
then the model-level ones), then the sanity check, costs and counts."""


def metric_info(name: str) -> Metric | None:
    """The :class:`Metric` of ``name`` or of its base name (``relevance@5%`` ->
    ``relevance``); ``None`` for a name outside the benchmark (a run's ``test_accuracy``)."""
    return METRICS.get(name.split("@", 1)[0])


def lower_is_better(name: str) -> bool:
    """Whether a lower value of ``name`` is better; names outside the registry count as
    higher-is-better."""
    info = metric_info(name)
    return info is not None and info.direction == "lower"


def is_model_level(name: str) -> bool:
    """Whether ``name`` describes the model and pairs, not the method."""
    info = metric_info(name)
    return info is not None and info.model_level


def is_count(name: str) -> bool:
    """Whether ``name`` is a count (``pairs``, ``prototypes``)."""
    info = metric_info(name)
    return info is not None and info.kind == "count"


def metric_names(*, kind: Kind | None = None, model_level: bool | None = None) -> tuple[str, ...]:
    """The registered names, in :data:`METRICS` order, of one ``kind`` and/or level."""
    return tuple(name for name, info in METRICS.items()
                 if (kind is None or info.kind == kind)
                 and (model_level is None or info.model_level == model_level))
