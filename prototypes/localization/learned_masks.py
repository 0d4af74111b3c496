"""Localizing prototypes with learned saliency masks: MDM, HDM and NeuroMask (:mod:`hdm`).

The score explained for pair ``b`` is the prototype's pooled similarity ``out.similarities[b,
prototype_ids[b]]`` (the quantity the last layer weighs) or, for HDM and MDM on a ProtoPNet,
its similarity at the position where it peaks (option ``score``, :data:`EXPLAINED_SCORES`;
:mod:`prototypes.localization.scores`), given to the :mod:`hdm` explainer as a callable
target. The explainer learns one mask per pair, all pairs in one batched optimisation
(:class:`hdm.engine.MaskOptimizer`), so a pair's map does not depend on the other pairs of the
batch (up to floating-point rounding). The map is then density-weighted and, if asked, its
peak chosen by occlusion (:mod:`prototypes.localization.peak_choice`). The box is the
high-activation box of that map with the same rule as ``upsample`` (by default the 95th
percentile; :func:`prototypes.localization.result.high_activation_box`).

Sources: MDM (Peng et al., arXiv:2207.08046), HDM (Peng et al., arXiv:2301.04970),
NeuroMask (Alzantot et al., arXiv:1908.04389); see :mod:`hdm.mdm`, :mod:`hdm.hierarchical`
and :mod:`hdm.neuromask` for what each learns and its options.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

import hdm
from hdm.hooks import evaluation_mode
from prototypes.localization.peak_choice import choose_peak_by_occlusion, weight_by_density
from prototypes.localization.result import Localization, check_box_rule, localization_from_maps
from prototypes.localization.scores import (
    SCORES,
    PairScores,
    prototype_id_tensor,
    prototype_scores,
    prototype_similarity_maps,
)
from prototypes.localization.upsample import upsample_maps
from prototypes.model import ProtoPNet, ProtoPNetOutput

__all__ = ["LEARNED_MASK_METHODS", "PROTOTYPE_DEFAULTS", "check_learned_mask_options",
           "learned_mask_localization"]

LEARNED_MASK_EXPLAINERS = ("mdm", "hdm", "neuromask")
"""Names in :data:`hdm.METHODS` of the mask-learning explainers."""

EXPLAINED_SCORES = ("auto", *SCORES)
"""Which score a learned mask keeps (:data:`prototypes.localization.scores.SCORES`):
``"pooled"``, the prototype's pooled similarity (``out.similarities``, what the last layer
weighs: ProtoPNet's max over positions, XProtoNet's occurrence-weighted cosine); ``"peak"``
(ProtoPNet only), its similarity at the latent position where it peaks in the unmasked image,
i.e. the one occurrence that push projects onto, that the upsampled map's box surrounds and that
Xu-Darme et al.'s fidelity reads; ``"auto"``: ``"peak"`` for ProtoPNet, ``"pooled"`` otherwise.
With the pooled max, a mask that must also remove the score (the deletion term) has to cover
every position that matches the prototype."""

PROTOTYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "hdm": {"score": "auto", "deletion_weight": 1.0, "density_sigma": 0.1, "stages": 1},
    "mdm": {"score": "auto", "deletion_weight": 1.0, "density_sigma": 0.1, "peak_candidates": 8},
    "neuromask": {"baseline": "blur", "weight_limit": 2.0},
}
"""Options that differ from an explainer's own defaults when it localizes prototypes (an option
given by the caller wins). Each was chosen on the localization benchmark (docs/method-design.md;
tables in ``benchmarks/results/`` under the names given):

- ``deletion_weight=1`` (HDM, MDM; ``hdm_deletion_*``): the deletion term turned the coarse
  4x4-latent model's empty masks into real ones (40 pairs: relevance 0.368 -> 0.705, fidelity
  0.605 -> 0.930) and raised consistency on SyntheticParts (120 pairs of the seed-1 model: 0.325
  -> 0.575).
- ``density_sigma=0.1`` (HDM, MDM; ``hdm_density_*``): density weighting puts the peak inside
  the densest part of the mask rather than on whichever near-top pixel comes first (three
  seeds, 6 images per prototype, chosen on other pairs: consistency 0.742 -> 0.792 and
  stability 0.790 -> 0.828 on SyntheticParts, 0.120 -> 0.140 and 0.458 -> 0.501 on
  FashionComposites).
- ``score="auto"``, the peak score on a ProtoPNet (HDM, MDM; ``hdm_score_*``): it raised HDM's
  fidelity on FashionComposites (50 pairs: 0.422 -> 0.472) at a cost in relevance (0.665 ->
  0.571) and in consistency (three seeds, 10 images per prototype: 0.127 with the pooled score,
  0.053 with the peak score, ``hdm_consistency_fashion_10*``). For MDM (``mdm_score_*``, three
  seeds; 6 images per prototype, 3 of them not seen when choosing) it raised consistency on
  SyntheticParts (0.608 -> 0.808, the oracle's 0.792) and fidelity on both sets (0.631 ->
  0.672, 0.414 -> 0.499), at a cost in relevance (0.605 -> 0.562, 0.633 -> 0.573) and, as for
  HDM, in consistency on FashionComposites (0.173 -> 0.127, the oracle's 0.147).
- ``peak_candidates=8`` (MDM only; ``mdm_peak_choice_*``): MDM's occlusion peak wins back most
  of the consistency the peak score cost on FashionComposites (same pairs: 0.127 -> 0.167) and
  raises consistency on the coarse map (6 images: 0.575 -> 0.650; docs/method-design.md, MDM's
  occlusion peak). It is not HDM's default: on the coarse map it put HDM's peak on the part the
  prototype relies on more often (three seeds, 10 images per prototype: responsible_part_hit
  0.724 -> 0.763) but lowered consistency (0.550 -> 0.450, ``hdm_peak_choice_coarse_10*``).
- MDM's deletion term and density weighting, chosen on 3 SyntheticParts images per prototype
  (consistency 0.417 -> 0.558, ``mdm_options_synthetic*``), held out under Huang's full
  protocol on all three sets (three seeds each, ``mdm_options_full_*``): consistency 0.233 ->
  0.608 on SyntheticParts and 0.000 -> 0.375 on the coarse map, fidelity 0.344 -> 0.404 on
  FashionComposites, at twice the passes (404).
- ``stages=1`` (HDM): one stage moved no mean metric by more than 0.01 on any set for 0.53-0.76
  of the model passes (three seeds, ``hdm_structure_*``, ``hdm_stages_*``), and its 50+50 steps
  reach 96 % or more of 100+100's quality on every set's relevance, energy and fidelity
  (``hdm_budget_one_stage_*``). The three-seed tables of docs/localization-benchmarks.md are
  measured with these defaults.
- ``baseline="blur"``, ``weight_limit=2`` (NeuroMask; ``neuromask_options_synthetic*``):
  NeuroMask's official settings (zero baseline, initial weights in [-10, 10] behind a sigmoid
  of temperature 0.3) left its masks at their random start on our prototype scores: on 40
  SyntheticParts pairs (seed-0 model, 1000 steps) the share of the map inside the object was
  0.181 and its peak never lay on the object, against 0.395 with the blurred baseline and 0.608
  (pointing game 0.600, consistency 0.675) with the blurred baseline and weights in [-2, 2],
  which keep the sigmoid unsaturated so that the fidelity term's gradient reaches the mask.
  These numbers were measured with the official code's 'VALID' Laplacian, which never smooths
  the border; :class:`hdm.regularizers.LaplacianSmoothness` pads it."""


def _explainer(method: str, model: Callable[[torch.Tensor], Any],
               options: dict[str, Any]) -> hdm.Explainer:
    """The :mod:`hdm` explainer called ``method``, with a clear error for unknown options (its
    constructor checks their values)."""
    explainer_class = hdm.METHODS[method]
    try:
        inspect.signature(explainer_class).bind(model, **options)
    except TypeError as error:
        known = [name for name in inspect.signature(explainer_class).parameters
                 if name != "model"]
        raise ValueError(f"localization method {method!r}: {error}; its options are "
                         f"{known}, 'percentile', 'relative_threshold', 'density_sigma', "
                         "'peak_candidates', 'peak_tolerance' and 'score'") from None
    return explainer_class(model, **options)


@dataclass(frozen=True)
class _MapOptions:
    """The options of a learned mask's map that are ours, not the explainer's."""

    density_sigma: float
    peak_candidates: int
    peak_tolerance: float
    score: str


def _split_options(method: str, options: dict[str, Any]) -> tuple[dict[str, Any], _MapOptions]:
    """``options`` over :data:`PROTOTYPE_DEFAULTS` split into the explainer's own options and
    the checked ``density_sigma``, ``peak_candidates``, ``peak_tolerance`` and ``score``."""
    if method not in LEARNED_MASK_EXPLAINERS:
        raise ValueError(f"method must be one of {LEARNED_MASK_EXPLAINERS}, got {method!r}")
    options = {**PROTOTYPE_DEFAULTS.get(method, {}), **options}
    density_sigma = options.pop("density_sigma", 0.0)
    if (isinstance(density_sigma, bool) or not isinstance(density_sigma, (int, float))
            or density_sigma < 0):
        raise ValueError(f"density_sigma must be a number >= 0 (a share of the image side), "
                         f"got {density_sigma!r}")
    peak_candidates = options.pop("peak_candidates", 0)
    if isinstance(peak_candidates, bool) or not isinstance(peak_candidates, int) \
            or peak_candidates < 0:
        raise ValueError(f"peak_candidates must be an integer >= 0, got {peak_candidates!r}")
    peak_tolerance = options.pop("peak_tolerance", 1.0)
    if (isinstance(peak_tolerance, bool) or not isinstance(peak_tolerance, (int, float))
            or not 0 < peak_tolerance <= 1):
        raise ValueError(f"peak_tolerance must be a number in (0, 1], got {peak_tolerance!r}")
    explained = options.pop("score", "pooled")
    if explained not in EXPLAINED_SCORES:
        raise ValueError(f"score must be one of {EXPLAINED_SCORES}, got {explained!r}")
    return options, _MapOptions(density_sigma, peak_candidates, float(peak_tolerance), explained)


def check_learned_mask_options(method: str, options: dict[str, Any]) -> None:
    """Raise the ``ValueError`` that :func:`learned_mask_localization` would raise for these
    options (names and values), without a model or images: so that a config or a study is
    refused before anything runs. The explainer is built around a stand-in model, which its
    constructor only stores."""
    options = dict(options)
    check_box_rule(options.pop("percentile", 95.0), options.pop("relative_threshold", 0.0))
    explainer_options, *_ = _split_options(method, options)
    _explainer(method, torch.nn.Identity(), explainer_options)


def learned_mask_localization(model: ProtoPNet, images: torch.Tensor,
                              prototype_ids: torch.Tensor | Sequence[int], *, method: str,
                              percentile: float = 95.0, relative_threshold: float = 0.0,
                              **options: Any) -> Localization:
    """Learned-mask localization of prototype ``prototype_ids[b]`` in ``images[b]``.

    Args:
        model: the ProtoPNet; its train/eval flags and parameters' ``requires_grad`` are
            restored afterwards and no gradient reaches its parameters.
        images: (B, 3, H, W) in [0, 1].
        prototype_ids: (B,) one prototype per image (any prototypes, any images).
        method: ``"mdm"``, ``"hdm"`` or ``"neuromask"``.
        percentile, relative_threshold: the box rule
            (:func:`prototypes.localization.result.high_activation_box`).
        options: keyword options of the :mod:`hdm` class (e.g. ``steps`` for MDM,
            ``benchmark_steps`` for HDM, ``steps`` and ``seed`` for NeuroMask, ``progress``)
            over :data:`PROTOTYPE_DEFAULTS`, and ``density_sigma``: the sigma, as a share of
            the image's shorter side, of
            :func:`prototypes.localization.peak_choice.weight_by_density`, which weighs the
            map by the mask mass around each pixel so that its peak lies inside the densest
            region (0 keeps the map); ``peak_candidates``: how many points of that map
            :func:`prototypes.localization.peak_choice.choose_peak_by_occlusion` tries, with
            the explainer's baseline, to move the peak to the one whose removal lowers the
            score most (0 keeps the peak; 8 is the measured setting,
            docs/method-design.md, Choosing HDM's peak); ``peak_tolerance`` (with
            ``peak_candidates``; 1, the default, takes the largest drop): among the candidates
            whose drop is at least this share of the largest, take the one where the
            prototype's upsampled similarity map is highest (it lowered MDM's consistency on
            the coarse map, docs/consistency.md, how consistent a map that follows the model
            can be); ``score``: one of :data:`EXPLAINED_SCORES`. Without these options (nor
            one in :data:`PROTOTYPE_DEFAULTS`, which sets HDM's and MDM's density_sigma to 0.1
            and their score to ``"auto"``), the map is kept and the pooled score explained.

    Returns:
        ``maps`` (B, H, W): the explainer's map in [0, 1]; ``boxes`` (B, 4) int64.
    """
    options, ours = _split_options(method, options)
    explained = ours.score
    ids = prototype_id_tensor(model, images, prototype_ids)
    if explained == "auto":
        explained = "peak" if isinstance(model, ProtoPNet) else "pooled"
    if explained == "peak" and not isinstance(model, ProtoPNet):
        raise ValueError(f"score 'peak' needs a ProtoPNet, got {type(model).__name__}")
    explainer = _explainer(method, model, options)
    with evaluation_mode(model):
        if explained == "pooled":
            def score(output: ProtoPNetOutput) -> torch.Tensor:
                return prototype_scores(output.similarities, ids)
        else:
            score = PairScores(model, images, ids, "peak")
        maps = weight_by_density(explainer(images, score),
                                 ours.density_sigma * min(images.shape[-2:]))
        if ours.peak_candidates:
            prior = (upsample_maps(prototype_similarity_maps(model, images, ids),
                                   tuple(images.shape[-2:]))
                     if ours.peak_tolerance < 1 else None)
            maps = choose_peak_by_occlusion(
                model, images, score, maps, candidates=ours.peak_candidates,
                baseline=explainer.baseline, blur_sigma=explainer.blur_sigma, prior=prior,
                tolerance=ours.peak_tolerance)
    return localization_from_maps(maps, percentile, relative_threshold)


LEARNED_MASK_METHODS: dict[str, Callable[..., Localization]] = {
    name: partial(learned_mask_localization, method=name) for name in LEARNED_MASK_EXPLAINERS
}
"""``mdm``, ``hdm``, ``neuromask`` as localization methods
``(model, images, prototype_ids, **options) -> Localization``."""
