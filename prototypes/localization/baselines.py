"""Baselines a localization method should beat: the receptive field of the best-matching
latent position, and two model-blind maps (a random map and a centred Gaussian).

``receptive_field`` is the patch the prototype matched: the receptive field
(:mod:`prototypes.receptive_field`) of the latent position most similar to the prototype,
as a binary map and its box. A localization method is only informative if it also beats
maps that ignore the model. ``random`` gives a smooth random blob pattern at the scale of the
``upsample`` maps (uniform noise on the grid of the model's similarity maps,
bicubic-upsampled like ``upsample``); ``centre`` is the centre bias of natural photographs
(objects tend to be centred), the Gaussian centre prior of saliency benchmarks (e.g. Judd,
Ehinger, Durand & Torralba, "Learning to predict where humans look", ICCV 2009). ``random``
and ``centre`` box their map with the same rule as the other methods.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hdm.hooks import evaluation_mode
from hdm.maps import gaussian_bumps
from prototypes.localization.result import Localization, localization_from_maps
from prototypes.localization.scores import prototype_id_tensor, prototype_similarity_maps
from prototypes.localization.upsample import upsample_maps
from prototypes.model import ProtoPNet
from prototypes.receptive_field import receptive_field_boxes

__all__ = ["centre_localization", "random_localization", "receptive_field_localization"]


def receptive_field_localization(model: ProtoPNet, images: torch.Tensor,
                                 prototype_ids: torch.Tensor | Sequence[int]) -> Localization:
    """The receptive field of the latent position most similar to the prototype (first one
    on ties): ``maps`` is 1 inside that box and 0 outside."""
    chosen = prototype_similarity_maps(model, images, prototype_ids)  # (B, h, w)
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


def random_localization(model: ProtoPNet, images: torch.Tensor,
                        prototype_ids: torch.Tensor | Sequence[int], *,
                        grid: int | tuple[int, int] | None = None, seed: int = 0,
                        percentile: float = 95.0,
                        relative_threshold: float = 0.0) -> Localization:
    """Uniform noise on a ``grid`` (rows, columns), bicubic-upsampled to the image, one
    independent draw per pair.

    Args:
        model: the ProtoPNet (or any model whose output has ``similarity_maps``); only the
            size of its similarity maps is used (one forward pass of one image, when ``grid``
            is None).
        images: (B, 3, H, W); only their size and device are used.
        prototype_ids: (B,) checked, otherwise unused.
        grid: cells of the noise, ``n`` or ``(h, w)``; None means the grid of the model's
            similarity maps for this image size (the resolution of the ``upsample`` maps).
        seed: seeds the noise, drawn on the images' device for the pairs in batch order: the
            same batch and seed give the same maps, and different pairs of a batch get
            independent maps (so a pair's map depends on its position in the batch).
        percentile, relative_threshold: the box rule
            (:func:`prototypes.localization.result.high_activation_box`).
    """
    prototype_id_tensor(model, images, prototype_ids)
    if grid is None:
        with evaluation_mode(model):
            rows, columns = model(images[:1]).similarity_maps.shape[-2:]
    else:
        rows, columns = (grid, grid) if isinstance(grid, int) else grid
    if rows < 1 or columns < 1:
        raise ValueError(f"random: grid must have positive sizes, got {grid}")
    generator = torch.Generator(device=images.device).manual_seed(seed)
    cells = torch.rand((images.shape[0], rows, columns), generator=generator,
                       device=images.device, dtype=images.dtype)
    maps = upsample_maps(cells, tuple(images.shape[-2:]))
    return localization_from_maps(maps, percentile, relative_threshold)


def centre_localization(model: ProtoPNet, images: torch.Tensor,
                        prototype_ids: torch.Tensor | Sequence[int], *, sigma: float = 0.25,
                        percentile: float = 95.0,
                        relative_threshold: float = 0.0) -> Localization:
    """An isotropic Gaussian centred on the image, the same for every pair.

    ``exp(-((y - cy)^2 + (x - cx)^2) / (2 s^2))`` at pixel centres, with ``(cy, cx)`` the
    image centre and ``s = sigma * min(H, W)`` pixels.

    Args:
        model: the ProtoPNet (only used to check ``prototype_ids``).
        images: (B, 3, H, W); only their size, dtype and device are used.
        prototype_ids: (B,) checked, otherwise unused.
        sigma: the Gaussian's standard deviation as a fraction of the image's shorter side.
        percentile, relative_threshold: the box rule
            (:func:`prototypes.localization.result.high_activation_box`).
    """
    prototype_id_tensor(model, images, prototype_ids)
    if sigma <= 0:
        raise ValueError(f"centre: sigma must be > 0, got {sigma}")
    height, width = images.shape[-2:]
    centre = torch.tensor([[(height - 1) / 2, (width - 1) / 2]], device=images.device,
                          dtype=images.dtype)
    gaussian = gaussian_bumps(centre, (height, width), sigma * min(height, width))
    maps = gaussian.expand(images.shape[0], height, width)
    return localization_from_maps(maps, percentile, relative_threshold)
