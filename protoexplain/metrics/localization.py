"""Scoring one localization method on (image, prototype) pairs with ground truth.

:func:`evaluate_localization` runs :func:`prototypes.localize` on batches of pairs and returns
``{metric: value}``. Every metric is computed only when the data set has the ground truth it
needs (keypoints: consistency and stability; object masks: relevance and object energy /
pointing; part masks: part energy / pointing / box IoU; labelled boxes: box energy /
pointing / IoU); the others are left out.

Metrics (fractions in [0, 1]; which way each is better, and which are model-level:
:data:`protoexplain.metrics.registry.METRICS`):

- ``consistency``, ``stability``: Huang et al. 2023 (:mod:`protoexplain.metrics.parts`),
  per prototype then averaged over prototypes;
- ``responsible_part_hit``: the share of pairs whose Huang box (around the map's peak) holds
  the keypoint of the part the prototype relies on in that image (the part whose removal
  lowers its similarity most, :func:`protoexplain.metrics.prototype_parts.responsible_parts`;
  pairs where no part's removal lowers it are skipped). It asks per image what consistency
  asks per prototype, with the model, not a fixed part, as ground truth;
- ``oracle_consistency``: Huang's consistency of an oracle whose peak is that part's keypoint
  in every image: how part-consistent the prototypes themselves are on these pairs. It does
  not depend on the method (every method's row repeats it). A faithful method's consistency
  is near it; one far above it is consistent on a part the prototypes do not rely on most;
- ``oracle_stability`` (with ``stability``): Huang's stability of that oracle, the part
  relied on being found again on the noisy image: how stable the prototypes themselves are
  under the noise. Method-independent like ``oracle_consistency``; a method far below it
  is less stable than the model it explains;
- ``relevance@a``, ``fidelity@a`` and their means over ``a`` (``relevance``, ``fidelity``):
  Xu-Darme et al. 2023 (:mod:`protoexplain.metrics.relevance`);
- ``energy_object``, ``pointing_object``, ``energy_part``, ``pointing_part``, ``iou_part``
  (energy-based pointing game and pointing game of :mod:`hdm.metrics`, box IoU of
  :mod:`protoexplain.metrics.regions`; the part is the prototype's part from
  :mod:`protoexplain.metrics.prototype_parts`, and pairs whose image does not show it are
  skipped);
- ``energy_box``, ``pointing_box``, ``iou_box``: the same three against the boxes of the
  prototype's class (a finding) in the pair's image, for data sets with labelled boxes
  (:mod:`protoexplain.metrics.boxes`; pairs whose image has no box of the class are skipped);
- ``deletion``, ``insertion``: area under the curve of the pair's score divided by its
  unperturbed value, as pixels are removed / inserted in the map's order (RISE protocol and
  substrates of :mod:`hdm.metrics`: black for deletion, blurred image for insertion);
- ``sanity_spearman``, ``sanity_ssim``: similarity of the maps of the trained and of a
  randomised model (:mod:`protoexplain.metrics.sanity`); low values pass;
- cost: ``seconds_per_pair``, ``forward_passes_per_pair``, ``backward_passes_per_pair`` of the
  localization itself (:mod:`protoexplain.metrics.cost`), and ``pairs``, ``prototypes``.

Pair-level metrics are averaged over pairs (NaN values, e.g. a constant map's undefined
rank correlation, are left out of the mean). Fidelity and deletion / insertion are relative
to the pair's unperturbed score, so they are left out (NaN) for pairs whose score is not
positive: a prototype that is absent from an image (a negative XProtoNet cosine on a
positive image: 2 of 30 pairs of a synthetic-radiograph model, ``research/empty_masks.py``)
has no region to remove, and its "drop" ``(s - s') / |s|`` is large and negative when a
perturbation moves the cosine toward zero; kept in the mean, such pairs turn the mean
fidelity of every method negative on that model. ProtoPNet's log similarity is always
positive, so this never applies there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from hdm.metrics import deletion_auc, energy_pointing_game, insertion_auc, pointing_game
from protoexplain.distributed import map_batches
from protoexplain.metrics.boxes import best_box_iou, finding_regions
from protoexplain.metrics.cost import PassCount, counting_passes
from protoexplain.metrics.pairs import EvaluationPairs
from protoexplain.metrics.parts import (
    CONSISTENCY_THRESHOLD,
    NOISE_BOUND,
    NOISE_STD,
    part_box_hits,
    part_hits,
    perturb_images,
    prototype_consistency,
    prototype_stability,
    scaled_half_sizes,
)
from protoexplain.metrics.prototype_parts import pair_part_scores
from protoexplain.metrics.prototype_parts import responsible_parts as relied_on_parts
from protoexplain.metrics.regions import box_iou, mask_boxes, scaled_tolerance
from protoexplain.metrics.relevance import (
    DEFAULT_FRACTIONS,
    fidelity_drop,
    relevance,
    top_fraction_masks,
)
from protoexplain.metrics.sanity import spearman_correlation, structural_similarity
from protoexplain.metrics.scores import FILLS, SCORES, PairScores, fill_values
from prototypes import localize

METRICS_VERSION = 3
"""Bumped whenever a metric is added or its computation changes, so that cached results
(``benchmarks/localization_seeds.py``'s ``seed_study.json``) are recomputed. 2: adds
``responsible_part_hit`` and ``oracle_consistency``; 3: ``oracle_stability``."""


@dataclass(frozen=True)
class LocalizationSettings:
    """Options of the localization metrics; defaults follow the sources.

    fractions: shares ``a`` of the image for relevance and fidelity.
    consistency_threshold: Huang's ``part_thresh`` (0.8).
    half_size: (half_y, half_x) of Huang's region around a peak in pixels; ``None`` scales
        the original 36 px at 224 px to the image size.
    noise_std, noise_bound: Huang's noise in normalised input space (0.2, clipped at 0.25).
    pointing_tolerance: pointing-game tolerance in pixels; ``None`` scales TorchRay's 15 px
        at 224 px to the image size.
    score: the score of a pair for fidelity, occlusion and deletion/insertion (the same
        vocabulary as the learned masks' option ``score``): ``"peak"``, the similarity at the
        latent position where the prototype peaks on the unperturbed image (Xu-Darme et al.),
        or ``"pooled"``, the pooled similarity the classifier uses.
    fill: what removed pixels become for fidelity and occlusion: ``"dataset_mean"``, the
        model's normalisation mean (zero after normalisation, as Xu-Darme et al.), or
        ``"image_mean"``, each image's per-channel mean colour, or ``"blur"``, a heavily
        blurred copy of the image (no flat patch for the model to read as a shape).
    stability, sanity, deletion_insertion: compute these metrics (each costs extra
        localizations or forward passes per pair).
    deletion_steps: number of deletion and insertion steps (``ceil(H W / steps)`` pixels
        each). RISE changes one image row per step (224 steps at 224 px); 32 steps moved the
        mean AUC by less than 0.001 and any pair's by at most 0.014 against 64 steps (32
        pairs, 64 px, small_cnn ProtoPNet) at half the cost, which dominates the benchmark
        on a CPU. Set it to the image height for RISE's protocol.
    """

    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    consistency_threshold: float = CONSISTENCY_THRESHOLD
    half_size: tuple[float, float] | None = None
    noise_std: float = NOISE_STD
    noise_bound: float = NOISE_BOUND
    pointing_tolerance: float | None = None
    score: str = "peak"
    fill: str = "dataset_mean"
    stability: bool = True
    sanity: bool = True
    deletion_insertion: bool = True
    deletion_steps: int = 32

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS}, got {self.fill!r}")
        if self.deletion_steps < 1:
            raise ValueError(f"deletion_steps must be >= 1, got {self.deletion_steps}")


def percent_label(fraction: float) -> str:
    """``0.05`` -> ``"5%"``: the suffix of per-fraction metric names."""
    return f"{100 * fraction:g}%"


def _batch_noise(model: nn.Module, images: Tensor, settings: LocalizationSettings, seed: int,
                 batch_number: int) -> Tensor:
    """Huang's noisy copy of a batch of images, seeded by the batch's number, so that every
    method, and the noisy relied-on parts, see the same noise on the same pairs."""
    generator = torch.Generator(device=images.device)
    generator.manual_seed(seed * 1_000_003 + batch_number)
    return perturb_images(images, model.std, noise_std=settings.noise_std,
                          bound=settings.noise_bound, generator=generator)


def needs_noisy_parts(settings: LocalizationSettings, pairs: EvaluationPairs) -> bool:
    """Whether ``oracle_stability`` is computed: stability is on and the pairs have part
    masks (to find the relied-on part) and keypoints (to score its box)."""
    return settings.stability and {"part_masks", "part_keypoints"} <= pairs.ground_truth.keys()


def noisy_responsible_parts(model: nn.Module, pairs: EvaluationPairs,
                            settings: LocalizationSettings | None = None, *,
                            part_definition: str = "occlusion", batch_size: int = 16,
                            device: torch.device | str = "cpu", seed: int = 0,
                            progress: bool = True) -> Tensor:
    """(M,) long: the part each pair's prototype relies on in the pair's *noisy* image (-1:
    none), the noise being :func:`evaluate_localization`'s for the same ``batch_size`` and
    ``seed``. Method-independent: :func:`protoexplain.benchmark.run_benchmark` finds it once
    for all methods (``oracle_stability``). Needs part masks in ``pairs.ground_truth``. Under
    torch.distributed the batches are shared among the processes and every process gets all
    parts."""
    settings = settings or LocalizationSettings()
    device = torch.device(device)

    def find(batch_number: int) -> Tensor:
        start = batch_number * batch_size
        rows = pairs.rows[start:start + batch_size]
        ids = pairs.prototypes[start:start + batch_size].to(device)
        images = pairs.images[rows].to(device)
        part_masks = pairs.ground_truth["part_masks"][rows].to(device)
        noisy = _batch_noise(model, images, settings, seed, batch_number)
        scores = pair_part_scores(model, noisy, ids, part_masks, definition=part_definition,
                                  score=settings.score, fill=settings.fill)
        return relied_on_parts(scores, part_masks.flatten(2).any(dim=2)).cpu()

    found = map_batches(-(-len(pairs) // batch_size), find, desc="parts on noisy images",
                        progress=progress)
    return torch.cat(found) if found else torch.zeros(0, dtype=torch.long)


def _localize(model: nn.Module, images: Tensor, prototype_ids: Tensor, method: str,
              options: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    found = localize(model, images, prototype_ids, method=method, **options)
    return found.maps.detach().float(), found.boxes.detach()


@dataclass
class _Accumulator:
    """Per-pair results of all batches, concatenated at the end."""

    values: dict[str, list[Tensor]] = field(default_factory=dict)

    def add(self, name: str, value: Tensor) -> None:
        self.values.setdefault(name, []).append(value.detach().float().cpu())

    def get(self, name: str, dim: int = 0) -> Tensor:
        return torch.cat(self.values[name], dim=dim)

    def __contains__(self, name: str) -> bool:
        return name in self.values


def _nanmean(values: Tensor) -> float:
    return float(values.double().nanmean())


def _add_part_hits(results: _Accumulator, maps: Tensor, noisy_maps: Tensor | None,
                   keypoints: Tensor, half_size: tuple[float, float]) -> Tensor:
    """Huang's part hits of the maps (returned) and, for stability, of the maps of the noisy
    images."""
    hits = part_hits(maps, keypoints, half_size)
    results.add("hits", hits)
    results.add("visible", keypoints[..., 2] > 0)
    if noisy_maps is not None:
        results.add("noisy_hits", part_hits(noisy_maps, keypoints, half_size))
    return hits


def _add_responsible_part_hits(results: _Accumulator, hits: Tensor, keypoints: Tensor,
                                responsible: Tensor, noisy_responsible: Tensor | None,
                                half_size: tuple[float, float]) -> None:
    """Whether each pair's peak box holds its responsible part's keypoint (NaN: no such
    part), and the part hits of the oracle box centred on that keypoint, on the clean and
    (for stability) on the noisy image."""
    rows = torch.arange(len(responsible), device=responsible.device)
    results.add("responsible_part_hit", hits[rows, responsible.clamp(min=0)].float()
                .where(responsible >= 0, torch.nan))
    results.add("oracle_hits", part_box_hits(keypoints, responsible, half_size))
    if noisy_responsible is not None:
        results.add("noisy_oracle_hits",
                    part_box_hits(keypoints, noisy_responsible, half_size))


def _add_part_region_metrics(results: _Accumulator, maps: Tensor, boxes: Tensor,
                             part_masks: Tensor, parts: Tensor, tolerance: float) -> None:
    """Energy, pointing game and box IoU on each pair's prototype part; NaN (skipped) where
    the prototype has no part or the image does not show it."""
    region = part_masks[torch.arange(len(parts), device=parts.device), parts.clamp(min=0)]
    region_boxes, present = mask_boxes(region)
    usable = present & (parts >= 0)
    nan = torch.full(parts.shape, float("nan"), device=parts.device)
    results.add("energy_part", energy_pointing_game(maps, region).where(usable, nan))
    results.add("pointing_part", pointing_game(maps, region, tolerance=tolerance
                                               ).where(usable, nan))
    results.add("iou_part", box_iou(boxes, region_boxes).where(usable, nan))


def _add_box_metrics(results: _Accumulator, maps: Tensor, boxes: Tensor, truth_boxes: Tensor,
                     truth_labels: Tensor, classes: Tensor, tolerance: float) -> None:
    """Energy, pointing game and best box IoU against the boxes of each pair's class; NaN
    (skipped) where the image has no box of it."""
    regions, present = finding_regions(truth_boxes, truth_labels, classes,
                                       tuple(maps.shape[-2:]))
    iou, found = best_box_iou(boxes, truth_boxes, truth_labels, classes)
    nan = torch.full(classes.shape, float("nan"), device=maps.device)
    results.add("energy_box", energy_pointing_game(maps, regions).where(present, nan))
    results.add("pointing_box", pointing_game(maps, regions, tolerance=tolerance
                                              ).where(present, nan))
    results.add("iou_box", iou.where(found, nan))


def evaluate_localization(model: nn.Module, pairs: EvaluationPairs, method: str,
                          options: Mapping[str, Any] | None = None, *,
                          prototype_parts: Tensor | None = None,
                          responsible_parts: Tensor | None = None,
                          noisy_parts: Tensor | None = None,
                          part_definition: str = "occlusion",
                          randomized_model: nn.Module | None = None,
                          settings: LocalizationSettings | None = None,
                          batch_size: int = 16, device: torch.device | str = "cpu",
                          seed: int = 0, progress: bool = True) -> dict[str, float]:
    """Localize every pair's prototype with ``method`` and score the maps.

    Args:
        model: a prototype network (``ProtoPNet``) on ``device``, in eval mode.
        pairs: the (image, prototype) pairs and ground truth, see
            :func:`protoexplain.metrics.pairs.build_pairs`.
        method, options: a name of :data:`prototypes.LOCALIZATION_METHODS` and its options.
        prototype_parts: (P,) part index of every prototype of the model (-1: none), from
            :mod:`protoexplain.metrics.prototype_parts`; needed for the part metrics.
        responsible_parts: (M,) the part each pair's prototype relies on in its image (-1:
            none), in pair order, from
            :func:`protoexplain.metrics.prototype_parts.responsible_parts`; needed for
            ``responsible_part_hit`` and ``oracle_consistency``, and with part masks and
            ``settings.stability`` for ``oracle_stability``.
        noisy_parts: (M,) the same on the noisy images, from
            :func:`noisy_responsible_parts` with this call's ``settings``, ``batch_size``
            and ``seed``; found here when needed and not given.
        part_definition: how ``responsible_parts`` were found
            (:func:`protoexplain.metrics.prototype_parts.pair_part_scores`), to find them
            again on the noisy images.
        randomized_model: the model with randomised weights for the sanity check (see
            :func:`protoexplain.metrics.sanity.randomized_copy`); required when
            ``settings.sanity``.
        settings: metric options (:class:`LocalizationSettings`).
        batch_size: pairs per ``localize`` call.
        device: where the work runs.
        seed: seeds the noise of stability (per batch, so every method sees the same noise
            when the pairs and batch size are the same) and the tie order of top-pixel masks.
        progress: show a progress bar.
    Returns:
        ``{metric: value}`` (see the module docstring). Under torch.distributed the batches
        of pairs are shared among the processes (:func:`protoexplain.distributed.map_batches`;
        every batch is scored as on one process, with the same noise and tie order) and every
        process returns the values of all pairs: those of one process, except the seconds.
    """
    settings = settings or LocalizationSettings()
    options = dict(options or {})
    device = torch.device(device)
    if settings.sanity and randomized_model is None:
        raise ValueError("settings.sanity needs randomized_model (see "
                         "protoexplain.metrics.sanity.randomized_copy)")
    height, width = pairs.images.shape[-2:]
    tolerance = settings.pointing_tolerance or scaled_tolerance((height, width))
    half_size = settings.half_size or scaled_half_sizes((height, width))
    pixels_per_step = math.ceil(height * width / settings.deletion_steps)
    model.eval()
    wants_noisy_parts = responsible_parts is not None and needs_noisy_parts(settings, pairs)
    if noisy_parts is None and wants_noisy_parts:
        noisy_parts = noisy_responsible_parts(
            model, pairs, settings, part_definition=part_definition, batch_size=batch_size,
            device=device, seed=seed, progress=progress)

    def score_batch(batch_number: int) -> tuple[dict[str, list[Tensor]], PassCount]:
        """The per-pair results of one batch of pairs and the cost of its localization."""
        start = batch_number * batch_size
        results, cost = _Accumulator(), PassCount()
        rows = pairs.rows[start:start + batch_size]
        ids = pairs.prototypes[start:start + batch_size].to(device)
        images = pairs.images[rows].to(device)
        truth = {key: value[rows].to(device) for key, value in pairs.ground_truth.items()}
        scores = PairScores(model, images, ids, settings.score)
        with counting_passes(model, cost):
            maps, boxes = _localize(model, images, ids, method, options)

        if "part_keypoints" in truth:
            noisy_maps = noisy_responsible = None
            if settings.stability:
                noisy = _batch_noise(model, images, settings, seed, batch_number)
                noisy_maps = _localize(model, noisy, ids, method, options)[0]
                if noisy_parts is not None:
                    noisy_responsible = noisy_parts[start:start + batch_size].to(device)
            hits = _add_part_hits(results, maps, noisy_maps, truth["part_keypoints"],
                                  half_size)
            if responsible_parts is not None:
                _add_responsible_part_hits(
                    results, hits, truth["part_keypoints"],
                    responsible_parts[start:start + batch_size].to(device), noisy_responsible,
                    half_size)
        top = top_fraction_masks(maps, settings.fractions, seed=seed)
        present = scores.reference > 0
        drop = fidelity_drop(scores.of_images, images, top,
                             fill_values(model, images, settings.fill), scores.reference)
        results.add("fidelity", drop.where(present, torch.nan))
        if "object_mask" in truth:
            objects = truth["object_mask"]
            results.add("relevance", relevance(top, objects))
            results.add("energy_object", energy_pointing_game(maps, objects))
            results.add("pointing_object", pointing_game(maps, objects, tolerance=tolerance))
        if "part_masks" in truth and prototype_parts is not None:
            _add_part_region_metrics(results, maps, boxes, truth["part_masks"],
                                     prototype_parts.to(device)[ids], tolerance)
        if "box_labels" in truth:
            _add_box_metrics(results, maps, boxes, truth["boxes"], truth["box_labels"],
                             model.prototype_class_identity.argmax(dim=1)[ids], tolerance)
        if settings.deletion_insertion:
            for name, area_under in (("deletion", deletion_auc), ("insertion", insertion_auc)):
                area = area_under(model, images, maps, scores.relative,
                                  pixels_per_step=pixels_per_step)
                results.add(name, area.where(present, torch.nan))
        if settings.sanity:
            random_maps = _localize(randomized_model, images, ids, method, options)[0]
            results.add("sanity_spearman", spearman_correlation(maps, random_maps))
            results.add("sanity_ssim", structural_similarity(maps, random_maps))
        return results.values, cost

    batches = map_batches(-(-len(pairs) // batch_size), score_batch,
                          desc=f"benchmark ({method})", progress=progress)
    results, cost = _Accumulator(), PassCount()
    for values, batch_cost in batches:
        for name, parts in values.items():
            results.values.setdefault(name, []).extend(parts)
        cost.forward_images += batch_cost.forward_images
        cost.backward_images += batch_cost.backward_images
        cost.seconds += batch_cost.seconds
    return _summarize(results, pairs, settings, cost)


def _summarize(results: _Accumulator, pairs: EvaluationPairs, settings: LocalizationSettings,
               cost: PassCount) -> dict[str, float]:
    """Averages of the per-pair results (per prototype first for Huang's scores)."""
    groups = torch.unique(pairs.prototypes, return_inverse=True)[1]
    num_groups = int(groups.max()) + 1
    summary: dict[str, float] = {}
    if "hits" in results:
        hits, visible = results.get("hits").bool(), results.get("visible").bool()
        summary["consistency"] = float(prototype_consistency(
            hits, visible, groups, num_groups, settings.consistency_threshold).double().mean())
        if "noisy_hits" in results:
            stable = prototype_stability(hits, results.get("noisy_hits").bool(), groups,
                                         num_groups)
            summary["stability"] = _nanmean(stable)
        if "oracle_hits" in results:
            summary["responsible_part_hit"] = _nanmean(results.get("responsible_part_hit"))
            summary["oracle_consistency"] = float(prototype_consistency(
                results.get("oracle_hits").bool(), visible, groups, num_groups,
                settings.consistency_threshold).double().mean())
        if "noisy_oracle_hits" in results:
            summary["oracle_stability"] = _nanmean(prototype_stability(
                results.get("oracle_hits").bool(), results.get("noisy_oracle_hits").bool(),
                groups, num_groups))
    for name in ("relevance", "fidelity"):
        if name in results:
            per_fraction = results.get(name, dim=1)  # (A, M)
            for fraction, values in zip(settings.fractions, per_fraction, strict=True):
                summary[f"{name}@{percent_label(fraction)}"] = _nanmean(values)
            summary[name] = _nanmean(per_fraction.nanmean(dim=1))
    for name in ("energy_object", "pointing_object", "energy_part", "pointing_part",
                 "iou_part", "energy_box", "pointing_box", "iou_box", "deletion", "insertion",
                 "sanity_spearman", "sanity_ssim"):
        if name in results:
            summary[name] = _nanmean(results.get(name))
    count = len(pairs)
    summary["seconds_per_pair"] = cost.seconds / count
    summary["forward_passes_per_pair"] = cost.forward_images / count
    summary["backward_passes_per_pair"] = cost.backward_images / count
    summary["pairs"] = float(count)
    summary["prototypes"] = float(num_groups)
    return summary
