"""Where a prototype lives in an image: one batched function per method, chosen by name.

``localize(model, images, prototype_ids, method=...)`` dispatches through
:data:`LOCALIZATION_METHODS`; a new method is a function with the signature
``(model, images, prototype_ids, **options) -> Localization`` added to that dict.

Methods here:

- ``upsample``: the original ProtoPNet's (cfchen-duke/ProtoPNet ``push.py`` and
  ``local_analysis.py``): the prototype's similarity map over latent positions is upsampled
  to the image size with bicubic interpolation (``cv2.resize(..., INTER_CUBIC)`` there,
  ``F.interpolate(mode="bicubic", align_corners=False)`` here: the same cubic kernel, a =
  -0.75, and pixel-centre alignment), and the box is the bounding box of the pixels at or
  above the map's 95th percentile (``helpers.find_high_activation_crop``).
- ``receptive_field``: the receptive field of the most similar latent position (the patch the
  prototype matched), as a binary map and its box.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from prototypes.model import ProtoPNet
from prototypes.modes import evaluation_mode
from prototypes.receptive_field import receptive_field_boxes

__all__ = ["LOCALIZATION_METHODS", "Localization", "high_activation_box", "localize",
           "min_max_normalise", "receptive_field_localization", "upsample_localization",
           "upsample_maps"]


@dataclass
class Localization:
    """``maps`` (B, H, W) in [0, 1]: where ``prototype_ids[b]`` lives in ``images[b]``;
    ``boxes`` (B, 4) int64 ``y0, y1, x0, x1`` (end-exclusive) of its high-activation region.
    Both on the images' device."""

    maps: torch.Tensor
    boxes: torch.Tensor


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic upsampling of (B, h, w) maps to (B, H, W), as OpenCV's ``INTER_CUBIC``."""
    return F.interpolate(maps[:, None], size=size, mode="bicubic", align_corners=False)[:, 0]


def min_max_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each (H, W) map of (B, H, W) scaled to [0, 1]; an exactly constant map becomes 0."""
    low = maps.amin(dim=(1, 2), keepdim=True)
    spread = maps.amax(dim=(1, 2), keepdim=True) - low
    return (maps - low) / spread.clamp(min=torch.finfo(maps.dtype).tiny)


def high_activation_box(maps: torch.Tensor, percentile: float = 95.0) -> torch.Tensor:
    """Bounding boxes (B, 4) ``y0, y1, x0, x1`` (end-exclusive) of each map's pixels at or
    above its ``percentile``-th percentile.

    The threshold is NumPy's default (linear) percentile, as the original's
    ``find_high_activation_crop`` (``helpers.py``), computed for the whole batch with two
    ``kthvalue`` calls (no size limit, unlike ``torch.quantile``) and interpolated in float64
    like NumPy.
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {tuple(maps.shape)}")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    batch, height, width = maps.shape
    flat = maps.reshape(batch, -1)
    rank = percentile / 100 * (flat.shape[1] - 1)
    lower = int(rank)
    fraction = rank - lower
    below = flat.kthvalue(lower + 1, dim=1).values.double()
    above = flat.kthvalue(min(lower + 2, flat.shape[1]), dim=1).values.double()
    step = above - below  # NumPy's _lerp, in float64 as NumPy does it
    threshold = below + step * fraction if fraction < 0.5 else above - step * (1 - fraction)
    mask = maps >= threshold[:, None, None]
    rows, columns = mask.any(dim=2), mask.any(dim=1)

    def span(hit: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        first = hit.int().argmax(dim=1)
        last = length - hit.flip(1).int().argmax(dim=1)
        return first, last

    y0, y1 = span(rows, height)
    x0, x1 = span(columns, width)
    return torch.stack([y0, y1, x0, x1], dim=1).long()


def _similarity_maps(model: ProtoPNet, images: torch.Tensor,
                     prototype_ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """(B, h, w) similarity map of prototype ``prototype_ids[b]`` on ``images[b]`` (eval
    mode, no grad)."""
    ids = torch.as_tensor(prototype_ids, device=images.device).long().reshape(-1)
    if images.ndim != 4 or ids.shape[0] != images.shape[0]:
        raise ValueError(f"need one prototype id per image: images {tuple(images.shape)}, "
                         f"prototype_ids {tuple(ids.shape)}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= model.num_prototypes):
        raise ValueError(f"prototype_ids must be in [0, {model.num_prototypes}), got "
                         f"{ids.tolist()}")
    with evaluation_mode(model):
        similarity = model(images).similarity_maps
    return similarity[torch.arange(ids.shape[0], device=ids.device), ids]


def upsample_localization(model: ProtoPNet, images: torch.Tensor,
                          prototype_ids: torch.Tensor | Sequence[int], *,
                          percentile: float = 95.0) -> Localization:
    """The original ProtoPNet's localization (see the module docstring).

    The box comes from the upsampled similarity map itself, as in the original; ``maps`` is
    that map min-max normalised per image (an exactly constant map becomes zeros). With the
    ``linear`` activation the original upsamples ``max_dist - d`` instead of ``-d``: a
    constant offset, which changes neither.
    """
    chosen = _similarity_maps(model, images, prototype_ids)  # (B, h, w)
    upsampled = upsample_maps(chosen, tuple(images.shape[-2:]))
    boxes = high_activation_box(upsampled, percentile)
    return Localization(maps=min_max_normalise(upsampled), boxes=boxes)


def receptive_field_localization(model: ProtoPNet, images: torch.Tensor,
                                 prototype_ids: torch.Tensor | Sequence[int]) -> Localization:
    """The receptive field of the latent position most similar to the prototype (first one
    on ties): ``maps`` is 1 inside that box and 0 outside."""
    chosen = _similarity_maps(model, images, prototype_ids)  # (B, h, w)
    width = chosen.shape[2]
    best = chosen.flatten(1).argmax(dim=1)
    height_size, width_size = images.shape[-2:]
    boxes = receptive_field_boxes(model.receptive_field, best // width, best % width,
                                  (height_size, width_size))
    rows = torch.arange(height_size, device=images.device)
    columns = torch.arange(width_size, device=images.device)
    inside_rows = (rows >= boxes[:, :1]) & (rows < boxes[:, 1:2])  # (B, H)
    inside_columns = (columns >= boxes[:, 2:3]) & (columns < boxes[:, 3:4])  # (B, W)
    maps = (inside_rows[:, :, None] & inside_columns[:, None, :]).to(images.dtype)
    return Localization(maps=maps, boxes=boxes)


LocalizationMethod = Callable[..., Localization]

LOCALIZATION_METHODS: dict[str, LocalizationMethod] = {
    "upsample": upsample_localization,
    "receptive_field": receptive_field_localization,
}
"""Localization methods by name: ``(model, images, prototype_ids, **options) -> Localization``."""


def localize(model: ProtoPNet, images: torch.Tensor,
             prototype_ids: torch.Tensor | Sequence[int], method: str = "upsample",
             **options) -> Localization:
    """Localize prototype ``prototype_ids[b]`` in ``images[b]`` (B, 3, H, W in [0, 1]) for the
    whole batch with the method called ``method``; ``options`` go to that method."""
    try:
        function = LOCALIZATION_METHODS[method]
    except KeyError:
        raise ValueError(f"unknown localization method {method!r}; choose one of "
                         f"{sorted(LOCALIZATION_METHODS)}") from None
    return function(model, images, prototype_ids, **options)
