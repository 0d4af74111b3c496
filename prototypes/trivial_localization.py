"""Model-blind localization baselines: a random map and a centred Gaussian.

A localization method is only informative if it beats maps that ignore the model. ``random``
gives a smooth random blob pattern at the scale of the ``upsample`` maps (uniform noise on
the grid of the model's similarity maps, bicubic-upsampled like ``upsample``); ``centre`` is
the centre bias of natural photographs (objects tend to be centred), the Gaussian centre prior
of saliency benchmarks (e.g. Judd, Ehinger, Durand & Torralba, "Learning to predict where
humans look", ICCV 2009). Both box their map with the same rule as the other methods.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hdm.maps import gaussian_bumps
from prototypes.localization_base import (
    Localization,
    localization_from_maps,
    prototype_id_tensor,
    upsample_maps,
)
from prototypes.model import ProtoPNet
from prototypes.modes import evaluation_mode

__all__ = ["centre_localization", "random_localization"]


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
        percentile, relative_threshold: the box rule (:func:`high_activation_box`).
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
        percentile, relative_threshold: the box rule (:func:`high_activation_box`).
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
