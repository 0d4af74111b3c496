"""Saliency metrics, batched on the images' device.

Every function returns one value per sample ``(B,)`` (``reduction="none"``) or their mean
(``reduction="mean"``, ignoring NaN). Model-based metrics score index targets by their
softmax probability (``softmax=True``, as the papers) and callable targets as given.

- Deletion / insertion (Petsiuk et al., RISE, BMVC 2018; official ``evaluation.py``):
  pixels are changed in order of decreasing saliency, ``pixels_per_step`` at a time, from
  the image towards a substrate (deletion) or from the substrate towards the image
  (insertion); the curve of scores over the ``n + 1`` states has the normalised area
  ``(sum - first / 2 - last / 2) / n`` (x in [0, 1]; the area lies in [0, 1] when the score
  does). RISE's substrates: zeros for deletion, a Gaussian blur (11 px kernel, sigma 5)
  for insertion.
- Pointing game (Zhang et al., "Top-down neural attention by excitation backprop",
  ECCV 2016; TorchRay ``PointingGame``): a hit when the saliency maximum lies closer than
  ``tolerance`` pixels (strictly) to a ground-truth pixel; ``tolerance=1`` asks for the
  maximum to lie on the region itself.
- Energy-based pointing game (Wang et al., "Score-CAM", CVPR-W 2020): the share of the
  saliency's total mass inside the region.
- Average drop and increase in confidence (Chattopadhay et al., "Grad-CAM++", WACV 2018,
  Sec. 5.1): with ``Y`` the score on the image and ``O`` on the explanation map
  ``E = saliency * image``, the drop is ``max(0, Y - O) / Y`` and the increase is
  ``[Y < O]``; their means times 100 are the paper's "Average Drop %" and "% Increase in
  Confidence".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from hdm.base import check_images
from hdm.hooks import explaining
from hdm.perturbation import gaussian_blur, make_baseline
from hdm.targets import Target, Targets

REDUCTIONS = ("none", "mean")
SUBSTRATES = ("zero", "blur")


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return values
    if reduction == "mean":
        return values.float().nanmean().to(values.dtype)
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_maps(images: Tensor, saliency: Tensor, name: str = "saliency") -> None:
    expected = (images.shape[0], *images.shape[2:])
    if tuple(saliency.shape) != expected:
        raise ValueError(
            f"{name} must have shape {expected} to match the images, got {tuple(saliency.shape)}"
        )


def _substrate(images: Tensor, kind: str) -> Tensor:
    if kind == "zero":
        return make_baseline(images, "zero")
    if kind == "blur":
        return gaussian_blur(images, sigma=5.0, kernel_size=11)
    raise ValueError(f"substrate must be one of {SUBSTRATES}, got {kind!r}")


def auc(curves: Tensor) -> Tensor:
    """Normalised trapezoidal area under curves ``(B, n + 1)`` sampled uniformly on [0, 1]."""
    steps = curves.shape[1] - 1
    if steps < 1:
        raise ValueError("a curve needs at least two points")
    return (curves.sum(dim=1) - curves[:, 0] / 2 - curves[:, -1] / 2) / steps


def causal_curves(
    model: Callable[[Tensor], Any],
    images: Tensor,
    saliency: Tensor,
    targets: Targets,
    *,
    mode: str,
    substrate: str,
    pixels_per_step: int | None = None,
    batch_size: int = 256,
    softmax: bool = True,
    progress: bool = False,
) -> Tensor:
    """Deletion or insertion curves ``(B, n + 1)``, ``n = ceil(H W / pixels_per_step)``.

    Args:
        model: images -> output.
        images: ``(B, C, H, W)`` in [0, 1].
        saliency: ``(B, H, W)``; ties are broken by pixel order (row-major).
        targets: class indices ``(B,)`` or callable ``output -> (B,)``.
        mode: ``"deletion"`` or ``"insertion"``.
        substrate: ``"zero"`` or ``"blur"``: what deleted pixels become / insertion starts from.
        pixels_per_step: pixels changed per step; default the image width (RISE: 224 at 224 px).
        batch_size: images per forward pass.
        softmax: score index targets by their softmax probability.
        progress: tqdm bar over chunks of steps.
    """
    images = check_images(images)
    _check_maps(images, saliency)
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    batch, _, height, width = images.shape
    pixels = height * width
    per_step = width if pixels_per_step is None else pixels_per_step
    if per_step < 1:
        raise ValueError(f"pixels_per_step must be positive, got {per_step}")
    steps = math.ceil(pixels / per_step)
    order = saliency.flatten(1).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(pixels, device=images.device).expand(batch, -1)
    )
    rank = rank.view(batch, 1, height, width)
    other = _substrate(images, substrate)
    start, finish = (images, other) if mode == "deletion" else (other, images)
    target = Target(targets, batch, images.device)
    score_of = target.probability if softmax else target.score
    per_chunk = max(1, batch_size // batch)
    curves = []
    with explaining(model), torch.no_grad():
        for first in tqdm(
            range(0, steps + 1, per_chunk), desc=mode, disable=not progress, leave=False
        ):
            counts = (
                torch.arange(first, min(first + per_chunk, steps + 1), device=images.device)
                * per_step
            )
            changed = rank[None] < counts[:, None, None, None, None]
            states = torch.where(changed, finish[None], start[None]).flatten(0, 1)
            curves.append(score_of(model(states), len(counts)).view(len(counts), batch))
    return torch.cat(curves).T.to(images.dtype)


def deletion_auc(
    model: Callable[[Tensor], Any],
    images: Tensor,
    saliency: Tensor,
    targets: Targets,
    *,
    substrate: str = "zero",
    pixels_per_step: int | None = None,
    batch_size: int = 256,
    softmax: bool = True,
    reduction: str = "none",
    progress: bool = False,
) -> Tensor:
    """Area under the deletion curve (lower is better); see :func:`causal_curves`."""
    curves = causal_curves(
        model,
        images,
        saliency,
        targets,
        mode="deletion",
        substrate=substrate,
        pixels_per_step=pixels_per_step,
        batch_size=batch_size,
        softmax=softmax,
        progress=progress,
    )
    return _reduce(auc(curves), reduction)


def insertion_auc(
    model: Callable[[Tensor], Any],
    images: Tensor,
    saliency: Tensor,
    targets: Targets,
    *,
    substrate: str = "blur",
    pixels_per_step: int | None = None,
    batch_size: int = 256,
    softmax: bool = True,
    reduction: str = "none",
    progress: bool = False,
) -> Tensor:
    """Area under the insertion curve (higher is better); see :func:`causal_curves`."""
    curves = causal_curves(
        model,
        images,
        saliency,
        targets,
        mode="insertion",
        substrate=substrate,
        pixels_per_step=pixels_per_step,
        batch_size=batch_size,
        softmax=softmax,
        progress=progress,
    )
    return _reduce(auc(curves), reduction)


def pointing_game(
    saliency: Tensor, regions: Tensor, *, tolerance: float = 15, reduction: str = "none"
) -> Tensor:
    """1.0 where the saliency maximum is within ``tolerance`` px of the region, else 0.0.

    Args:
        saliency: ``(B, H, W)``; the first maximum in row-major order is the point.
        regions: ``(B, H, W)`` boolean ground truth; an empty region gives NaN (skipped).
        tolerance: strict distance bound in pixels (TorchRay: 15).
    """
    if saliency.shape != regions.shape:
        raise ValueError(
            f"saliency {tuple(saliency.shape)} and regions {tuple(regions.shape)} "
            "must have the same shape"
        )
    batch, height, width = saliency.shape
    point = saliency.flatten(1).argmax(dim=1)
    y, x = point // width, point % width
    rows = torch.arange(height, device=saliency.device)[None, :, None]
    columns = torch.arange(width, device=saliency.device)[None, None, :]
    accept = (rows - y[:, None, None]) ** 2 + (columns - x[:, None, None]) ** 2 < tolerance**2
    hits = (accept & regions.bool()).flatten(1).any(dim=1).to(saliency.dtype)
    empty = ~regions.bool().flatten(1).any(dim=1)
    return _reduce(hits.masked_fill(empty, float("nan")), reduction)


def energy_pointing_game(saliency: Tensor, regions: Tensor, *, reduction: str = "none") -> Tensor:
    """Share of the saliency mass inside the region, ``sum_in S / sum S`` (NaN if ``sum S = 0``).

    Args:
        saliency: ``(B, H, W)``, non-negative.
        regions: ``(B, H, W)`` boolean (a segmentation mask or a filled bounding box).
    """
    if saliency.shape != regions.shape:
        raise ValueError(
            f"saliency {tuple(saliency.shape)} and regions {tuple(regions.shape)} "
            "must have the same shape"
        )
    if bool((saliency < 0).any()):
        raise ValueError("energy_pointing_game needs non-negative saliency")
    total = saliency.flatten(1).sum(dim=1)
    inside = (saliency * regions.to(saliency.dtype)).flatten(1).sum(dim=1)
    return _reduce(inside / total.masked_fill(total == 0, float("nan")), reduction)


def _confidences(
    model: Callable[[Tensor], Any],
    images: Tensor,
    saliency: Tensor,
    targets: Targets,
    softmax: bool,
) -> tuple[Tensor, Tensor]:
    images = check_images(images)
    _check_maps(images, saliency)
    target = Target(targets, images.shape[0], images.device)
    score_of = target.probability if softmax else target.score
    with explaining(model), torch.no_grad():
        both = model(torch.cat([images, images * saliency[:, None]]))
        scores = score_of(both, 2).view(2, -1).to(images.dtype)
    return scores[0], scores[1]


def average_drop(
    model: Callable[[Tensor], Any],
    images: Tensor,
    saliency: Tensor,
    targets: Targets,
    *,
    softmax: bool = True,
    reduction: str = "none",
) -> Tensor:
    """Relative drop of the score on ``saliency * image``: ``max(0, Y - O) / Y`` (Y > 0)."""
    original, explained = _confidences(model, images, saliency, targets, softmax)
    if bool((original <= 0).any()):
        raise ValueError(
            "average_drop needs positive scores on the images (use softmax=True for class indices)"
        )
    return _reduce((original - explained).clamp_min(0) / original, reduction)


def increase_in_confidence(
    model: Callable[[Tensor], Any],
    images: Tensor,
    saliency: Tensor,
    targets: Targets,
    *,
    softmax: bool = True,
    reduction: str = "none",
) -> Tensor:
    """1.0 where the score on ``saliency * image`` exceeds the score on the image, else 0.0."""
    original, explained = _confidences(model, images, saliency, targets, softmax)
    return _reduce((explained > original).to(images.dtype), reduction)
