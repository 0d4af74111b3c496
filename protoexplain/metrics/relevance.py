"""Relevance and fidelity of the top pixels of a map (Xu-Darme et al., CVPRW 2023).

Source: Xu-Darme, Quénot, Chihani, Rousset, "Sanity checks for patch visualisation in
prototype-based image classification", XAI4CV workshop at CVPR 2023; code
romain-xu-darme/prototype_sanity_checks, ``protopnet/get_prototype_stats.py`` (commit 57d2573),
``mask`` mode:

- the top ``a`` of the map's pixels form a binary mask (``find_mask_to_area``, lines 50-65);
- *relevance* is the share of those pixels inside the object segmentation (lines 270-276);
- *fidelity*: those pixels are set to the data set's normalisation mean (lines 280-283) and
  the prototype's similarity is read at the latent position where it peaks in the unperturbed
  image; the original reports the ratio perturbed / unperturbed (lines 286-300).

Differences, all documented choices: the original thresholds ``map > sorted[int(N (1 - a))]``,
which selects fewer than ``a N`` pixels when values tie (a saturated mask may select none);
here exactly ``max(1, round(a N))`` pixels are selected and ties are broken by a fixed random
order of the pixels (seeded), so flat maps neither gain nor lose by their ties. Fidelity is
reported as the *relative drop* ``(s - s') / |s|`` (one minus the original ratio), so that,
like relevance, higher is better (every metric's direction:
:data:`protoexplain.metrics.registry.METRICS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

DEFAULT_FRACTIONS = (0.01, 0.05, 0.10, 0.20)
"""Shares of the image's pixels; the original sweeps 0.1 % to 2 % at 224 px (50 to 1000
pixels), which at 64 px would be 4 to 80 pixels: a wider range is used here."""


def top_fraction_masks(maps: Tensor, fractions: Sequence[float], *, seed: int = 0) -> Tensor:
    """The top ``a`` of each map's pixels, for each fraction ``a``.

    maps: (B, H, W). Returns bool (A, B, H, W) with exactly ``max(1, round(a H W))`` pixels
    per mask: the highest values, ties broken by one random order of the pixel positions
    drawn from ``seed`` (the same for every map, so results are reproducible).
    """
    if not fractions or not all(0.0 < a <= 1.0 for a in fractions):
        raise ValueError(f"fractions must be in (0, 1], got {list(fractions)}")
    batch, height, width = maps.shape
    pixels = height * width
    generator = torch.Generator().manual_seed(seed)
    tie_order = torch.randperm(pixels, generator=generator).to(maps.device)
    values = maps.flatten(1)[:, tie_order]
    ranked = tie_order[values.argsort(dim=1, descending=True, stable=True)]
    rank_of_pixel = torch.empty_like(ranked)
    positions = torch.arange(pixels, device=maps.device).expand(batch, pixels)
    rank_of_pixel.scatter_(1, ranked, positions)
    counts = torch.tensor([max(1, round(a * pixels)) for a in fractions], device=maps.device)
    masks = rank_of_pixel.unsqueeze(0) < counts.view(-1, 1, 1)
    return masks.view(len(fractions), batch, height, width)


def relevance(top_masks: Tensor, object_mask: Tensor) -> Tensor:
    """Share of the selected pixels inside the object: float (A, B).

    top_masks: bool (A, B, H, W) from :func:`top_fraction_masks`; object_mask: bool (B, H, W).
    """
    inside = (top_masks & object_mask.unsqueeze(0)).flatten(2).sum(dim=2)
    return inside.float() / top_masks.flatten(2).sum(dim=2).clamp(min=1).float()


def fill_pixels(images: Tensor, masks: Tensor, fill: Tensor) -> Tensor:
    """Copies of ``images`` with masked pixels replaced by ``fill``.

    images: (B, C, H, W); masks: bool (A, B, H, W); fill: (C,) or (B, C) per-channel values,
    or (B, C, H, W) replacement images. Returns (A * B, C, H, W), fraction-major (rows
    ``a B .. a B + B - 1`` use mask ``a``).
    """
    fill = fill.to(images)
    if fill.ndim != 4:
        fill = fill.view(-1, images.shape[1], 1, 1)
    mask = masks.unsqueeze(2)
    filled = torch.where(mask, fill.unsqueeze(0), images.unsqueeze(0))
    return filled.flatten(0, 1)


def fidelity_drop(score: Callable[[Tensor], Tensor], images: Tensor, top_masks: Tensor,
                  fill: Tensor, reference: Tensor) -> Tensor:
    """Relative drop of a score when the selected pixels are replaced by ``fill``: (A, B).

    score: images (A * B, C, H, W) -> (A * B,) scores of the pairs' prototypes, repeated
    fraction-major; images: (B, C, H, W); top_masks: bool (A, B, H, W); fill: see
    :func:`fill_pixels`; reference: (B,) the unperturbed scores. Returns
    ``(reference - s') / |reference|``.
    """
    perturbed = score(fill_pixels(images, top_masks, fill)).view(top_masks.shape[:2])
    return (reference.unsqueeze(0) - perturbed) / reference.abs().clamp(min=1e-12).unsqueeze(0)
