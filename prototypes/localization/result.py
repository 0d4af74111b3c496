"""What a localization method returns, and how a heat map becomes one: the map in [0, 1]
and the box around its high-activation region (the original ProtoPNet's 95th-percentile
rule, the same for every method so that boxes are comparable).

Every method gets B (image, prototype) pairs: ``images`` (B, 3, H, W) in [0, 1] and one
prototype id per image, and returns a :class:`Localization` on the images' device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Localization", "check_box_rule", "high_activation_box", "localization_from_maps",
           "min_max_normalise"]


@dataclass
class Localization:
    """``maps`` (B, H, W) in [0, 1]: where ``prototype_ids[b]`` lives in ``images[b]``;
    ``boxes`` (B, 4) int64 ``y0, y1, x0, x1`` (end-exclusive) of its high-activation region.
    Both on the images' device."""

    maps: torch.Tensor
    boxes: torch.Tensor


def min_max_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each (H, W) map of (B, H, W) scaled to [0, 1]; an exactly constant map becomes 0."""
    low = maps.amin(dim=(1, 2), keepdim=True)
    spread = maps.amax(dim=(1, 2), keepdim=True) - low
    return (maps - low) / spread.clamp(min=torch.finfo(maps.dtype).tiny)


def check_box_rule(percentile: float, relative_threshold: float) -> None:
    """Raise ``ValueError`` unless ``percentile`` is a number in [0, 100] and
    ``relative_threshold`` one in [0, 1] (the options of :func:`high_activation_box`)."""
    for name, value, high in (("percentile", percentile, 100),
                              ("relative_threshold", relative_threshold, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0 <= value <= high:
            raise ValueError(f"{name} must be a number in [0, {high}], got {value!r}")


def high_activation_box(maps: torch.Tensor, percentile: float = 95.0,
                        relative_threshold: float = 0.0) -> torch.Tensor:
    """Bounding boxes (B, 4) ``y0, y1, x0, x1`` (end-exclusive) of each map's pixels at or
    above its ``percentile``-th percentile.

    The threshold is NumPy's default (linear) percentile, as the original's
    ``find_high_activation_crop`` (``helpers.py``), computed for the whole batch with two
    ``kthvalue`` calls (no size limit, unlike ``torch.quantile``) and interpolated in float64
    like NumPy.

    Two additions for sparse maps (gradients, learned masks), neither of which changes the
    original's boxes of smooth maps such as upsampled similarity maps:

    - when the percentile is the map's minimum (more than ``100 - percentile`` % of its
      pixels share the minimum), the box surrounds the pixels above the minimum, where the
      original would box the whole image (a constant map still gets the whole image);
    - ``relative_threshold`` in [0, 1] also requires the pixels to reach
      ``min + relative_threshold * (max - min)``, as CAM's boxes keep the pixels above 20 %
      of the maximum (Zhou et al., "Learning deep features for discriminative localization",
      CVPR 2016); 0 (default) is the original rule.
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {tuple(maps.shape)}")
    check_box_rule(percentile, relative_threshold)
    batch, height, width = maps.shape
    flat = maps.reshape(batch, -1)
    rank = percentile / 100 * (flat.shape[1] - 1)
    lower = int(rank)
    fraction = rank - lower
    below = flat.kthvalue(lower + 1, dim=1).values.double()
    above = flat.kthvalue(min(lower + 2, flat.shape[1]), dim=1).values.double()
    step = above - below  # NumPy's _lerp, in float64 as NumPy does it
    threshold = below + step * fraction if fraction < 0.5 else above - step * (1 - fraction)
    low, high = flat.amin(dim=1).double(), flat.amax(dim=1).double()
    threshold = torch.maximum(threshold, low + relative_threshold * (high - low))
    above_low = maps > low[:, None, None]
    at_minimum = (threshold <= low) & (high > low)
    mask = torch.where(at_minimum[:, None, None], above_low, maps >= threshold[:, None, None])
    rows, columns = mask.any(dim=2), mask.any(dim=1)

    def span(hit: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        first = hit.int().argmax(dim=1)
        last = length - hit.flip(1).int().argmax(dim=1)
        return first, last

    y0, y1 = span(rows, height)
    x0, x1 = span(columns, width)
    return torch.stack([y0, y1, x0, x1], dim=1).long()


def localization_from_maps(maps: torch.Tensor, percentile: float = 95.0,
                           relative_threshold: float = 0.0) -> Localization:
    """A method's raw heat maps (B, H, W) (larger = more the prototype's) as a
    :class:`Localization`: the maps min-max normalised, and the boxes of
    :func:`high_activation_box` (by default the original ProtoPNet's 95th-percentile rule,
    the same for every method so that boxes are comparable)."""
    return Localization(maps=min_max_normalise(maps),
                        boxes=high_activation_box(maps, percentile, relative_threshold))
