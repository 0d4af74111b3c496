"""The ProtoPNet baseline ``upsample``: the prototype's similarity map upsampled to the image.

As the original ProtoPNet (cfchen-duke/ProtoPNet ``push.py`` and ``local_analysis.py``): the
prototype's similarity map over latent positions is upsampled to the image size with bicubic
interpolation (``cv2.resize(..., INTER_CUBIC)`` there, ``F.interpolate(mode="bicubic",
align_corners=False)`` here: the same cubic kernel, a = -0.75, and pixel-centre alignment), and
the box is the bounding box of the pixels at or above the map's 95th percentile
(``helpers.find_high_activation_crop``; :func:`prototypes.localization.result.high_activation_box`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from prototypes.localization.result import Localization, localization_from_maps
from prototypes.localization.scores import prototype_similarity_maps
from prototypes.model import ProtoPNet

__all__ = ["upsample_localization", "upsample_maps"]


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic upsampling of (B, h, w) maps to (B, H, W), as OpenCV's ``INTER_CUBIC``."""
    return F.interpolate(maps[:, None], size=size, mode="bicubic", align_corners=False)[:, 0]


def upsample_localization(model: ProtoPNet, images: torch.Tensor,
                          prototype_ids: torch.Tensor | Sequence[int], *,
                          percentile: float = 95.0,
                          relative_threshold: float = 0.0) -> Localization:
    """The original ProtoPNet's localization (see the module docstring).

    The box comes from the upsampled similarity map itself, as in the original; ``maps`` is
    that map min-max normalised per image (an exactly constant map becomes zeros). With the
    ``linear`` activation the original upsamples ``max_dist - d`` instead of ``-d``: a
    constant offset, which changes neither. ``relative_threshold`` (0: the original rule)
    is explained in :func:`prototypes.localization.result.high_activation_box`.
    """
    chosen = prototype_similarity_maps(model, images, prototype_ids)  # (B, h, w)
    upsampled = upsample_maps(chosen, tuple(images.shape[-2:]))
    return localization_from_maps(upsampled, percentile, relative_threshold)
