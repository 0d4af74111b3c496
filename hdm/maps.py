"""Batched operations on saliency maps ``(B, H, W)``: rescaling, resizing, thresholds."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def normalize_maps(maps: Tensor, eps: float = 1e-12) -> Tensor:
    """Rescale each map linearly to [0, 1] (min to 0, max to 1); a constant map becomes 0.

    Args:
        maps: ``(B, ...)``, any real values.
    """
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > eps, (flat - low) / span.clamp_min(eps), torch.zeros_like(flat))
    return scaled.view_as(maps)


def resize_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``(B, h, w)`` maps to ``(B, *size)`` (``align_corners=False``)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def otsu_thresholds(maps: Tensor, bins: int = 256) -> Tensor:
    """Otsu's threshold of every map in [0, 1]: maximises the between-class variance.

    Otsu, "A threshold selection method from gray-level histograms", IEEE SMC 1979.
    The histogram has ``bins`` equal bins on [0, 1]; the threshold returned is the upper
    edge of the last bin of the lower class, so ``maps > threshold`` is the upper class.

    Args:
        maps: ``(B, ...)`` with values in [0, 1].
    Returns:
        ``(B,)`` thresholds.
    """
    flat = maps.flatten(1).float()
    index = (flat * bins).long().clamp(0, bins - 1)
    histogram = torch.zeros(flat.shape[0], bins, device=maps.device).scatter_add_(
        1, index, torch.ones_like(flat)
    )
    probability = histogram / flat.shape[1]
    centres = (torch.arange(bins, device=maps.device, dtype=torch.float32) + 0.5) / bins
    weight_low = probability.cumsum(1)
    mass_low = (probability * centres).cumsum(1)
    total_mass = mass_low[:, -1:]
    weight_high = 1 - weight_low
    mean_low = mass_low / weight_low.clamp_min(1e-12)
    mean_high = (total_mass - mass_low) / weight_high.clamp_min(1e-12)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    best = between.argmax(dim=1)
    return ((best + 1).float() / bins).to(maps.dtype)
