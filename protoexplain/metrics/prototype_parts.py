"""Which object part a prototype stands for, decided without any localization method.

Part metrics (energy and pointing game on the prototype's part, IoU with its box) need one
part per prototype. Deriving it from a localization method's own maps would reward that
method for agreeing with itself, so two method-independent definitions are offered; both
score every (image, prototype) pair per part and give each prototype the part with the
highest mean score over the pairs where that part is visible:

- ``"occlusion"`` (default): the part whose removal lowers the prototype's similarity most.
  Each visible part is filled with the fill colour (the data set mean, as for fidelity) and
  the relative drop of the similarity is the pair's score for that part. It asks the model,
  not a map, what the prototype responds to, so no localization method is favoured.
- ``"latent_peak"``: the part under the centre of the receptive field of the latent position
  where the prototype's similarity peaks (score 1 for that part, 0 for the others). Cheaper,
  but the ``upsample`` baseline peaks near that same point, so this definition leans
  towards it; it is offered for comparison.

Prototypes without any visible part in their pairs get part -1 (no part).

The same scores also name, per pair, the part the prototype relies on *in that image*
(:func:`responsible_parts`): the visible part with the highest positive score. It is the
per-image ground truth of :mod:`protoexplain.metrics.localization`'s
``responsible_part_hit`` and ``oracle_consistency``, which tell a method that points at the
wrong part from a prototype that has no consistent part to point at.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from protoexplain.distributed import map_batches
from protoexplain.metrics.pairs import EvaluationPairs
from protoexplain.metrics.relevance import fill_pixels
from protoexplain.metrics.scores import PairScores, fill_values

PART_DEFINITIONS = ("occlusion", "latent_peak")


def occlusion_scores(score: Callable[[Tensor], Tensor], images: Tensor, part_masks: Tensor,
                     fill: Tensor, reference: Tensor) -> Tensor:
    """Relative similarity drop when each part is filled: float (B, N).

    score: images (N * B, C, H, W) -> (N * B,) the pairs' prototype similarities, part-major;
    images: (B, C, H, W); part_masks: bool (B, N, H, W); fill: see :func:`fill_pixels`;
    reference: (B,) unperturbed similarities. Returns ``(reference - s') / |reference|``.
    """
    masks = part_masks.transpose(0, 1)  # (N, B, H, W)
    perturbed = score(fill_pixels(images, masks, fill)).view(masks.shape[:2]).transpose(0, 1)
    return (reference.unsqueeze(1) - perturbed) / reference.abs().clamp(min=1e-12).unsqueeze(1)


def latent_peak_scores(peak_centres: Tensor, part_masks: Tensor) -> Tensor:
    """Whether each part covers the pixel at each pair's peak centre: float (B, N) of 0/1.

    peak_centres: (B, 2) (y, x) in continuous pixel coordinates (pixel ``i`` spans
    ``[i, i + 1)``), e.g. a receptive field's centre ``start + index * jump``; part_masks:
    bool (B, N, H, W).
    """
    batch, _, height, width = part_masks.shape
    rows = peak_centres[:, 0].floor().long().clamp(0, height - 1)
    columns = peak_centres[:, 1].floor().long().clamp(0, width - 1)
    picked = part_masks[torch.arange(batch, device=part_masks.device), :, rows, columns]
    return picked.float()


def assign_prototype_parts(scores: Tensor, visible: Tensor, groups: Tensor,
                           num_groups: int) -> Tensor:
    """Part of each prototype: long (num_groups,), -1 when none of its pairs shows a part.

    scores: float (M, N) per pair and part; visible: bool (M, N) the part is in the image;
    groups: long (M,) prototype of each pair. The part with the highest mean score over the
    pairs where it is visible (first part on ties).
    """
    sums = torch.zeros(num_groups, scores.shape[1], device=scores.device, dtype=torch.float64)
    counts = torch.zeros_like(sums)
    sums.index_add_(0, groups, torch.where(visible, scores, 0.0).double())
    counts.index_add_(0, groups, visible.double())
    means = torch.where(counts > 0, sums / counts.clamp(min=1), float("-inf"))
    parts = means.argmax(dim=1)
    return parts.where(counts.any(dim=1), -1)


def responsible_parts(scores: Tensor, visible: Tensor) -> Tensor:
    """Part each pair's prototype relies on in that image: long (M,), -1 when none.

    scores, visible: (M, N) per pair and part, as :func:`score_pair_parts` returns. The
    visible part with the highest score (first on ties), or -1 when no visible part scores
    above 0 (removing any one part does not lower the similarity: the prototype responds to
    something else, e.g. the background).
    """
    masked = scores.masked_fill(~visible, float("-inf"))
    best, parts = masked.max(dim=1)
    return parts.where(best > 0, -1)


def pair_part_scores(model: nn.Module, images: Tensor, prototype_ids: Tensor,
                     part_masks: Tensor, *, definition: str = "occlusion",
                     score: str = "peak", fill: str = "dataset_mean") -> Tensor:
    """One batch's score of every part for every pair: float (B, N) on the images' device.

    images: (B, C, H, W) in [0, 1]; prototype_ids: (B,); part_masks: bool (B, N, H, W).
    definition: ``"occlusion"`` or ``"latent_peak"`` (module docstring); score, fill:
    as :class:`protoexplain.metrics.localization.LocalizationSettings` (occlusion only).
    ``latent_peak`` needs ``model.receptive_field`` (``start``, ``jump`` in pixels).
    """
    if definition not in PART_DEFINITIONS:
        raise ValueError(f"part definition must be one of {PART_DEFINITIONS}, "
                         f"got {definition!r}")
    scores = PairScores(model, images, prototype_ids, score)
    if definition == "occlusion":
        return occlusion_scores(scores.of_images, images, part_masks,
                                fill_values(model, images, fill), scores.reference)
    width = scores.latent_size[1]
    field = model.receptive_field
    latent = torch.stack([scores.peaks // width, scores.peaks % width], dim=1)
    return latent_peak_scores(field.start + latent.double() * field.jump, part_masks)


def score_pair_parts(model: nn.Module, pairs: EvaluationPairs, *,
                     definition: str = "occlusion", score: str = "peak",
                     fill: str = "dataset_mean", batch_size: int = 16,
                     device: torch.device | str = "cpu", progress: bool = True
                     ) -> tuple[Tensor, Tensor]:
    """Every pair's score for every part, in pair order: (scores float (M, N), visible bool
    (M, N)), on the CPU; options as :func:`pair_part_scores`. Under torch.distributed the
    batches are shared among the processes and every process gets all scores."""
    if "part_masks" not in pairs.ground_truth:
        raise ValueError("the prototype's part needs part masks, which the data set lacks")
    device = torch.device(device)
    model.eval()
    part_masks = pairs.ground_truth["part_masks"]

    def score_batch(batch: int) -> tuple[Tensor, Tensor]:
        start = batch * batch_size
        rows = pairs.rows[start:start + batch_size]
        masks = part_masks[rows].to(device)
        return (pair_part_scores(model, pairs.images[rows].to(device),
                                 pairs.prototypes[start:start + batch_size].to(device), masks,
                                 definition=definition, score=score, fill=fill).cpu(),
                masks.flatten(2).any(dim=2).cpu())

    found = map_batches(-(-len(pairs) // batch_size), score_batch,
                        desc=f"prototype parts ({definition})", progress=progress)
    return torch.cat([s for s, _ in found]), torch.cat([v for _, v in found])


def find_prototype_parts(model: nn.Module, pairs: EvaluationPairs, **options: Any) -> Tensor:
    """The part of every prototype of ``model`` from the pairs' part masks: long (P,) on the
    CPU for all P prototypes; -1 for prototypes that are not in the pairs or whose images show
    none of the parts. ``options``: those of :func:`score_pair_parts`."""
    scores, visible = score_pair_parts(model, pairs, **options)
    num_prototypes = model.prototype_class_identity.shape[0]
    return assign_prototype_parts(scores, visible, pairs.prototypes, num_prototypes)
