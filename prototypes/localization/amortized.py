"""``amortized``: the mask of a trained mask predictor (:mod:`prototypes.mask_predictor`),
learned-mask localization at about the cost of ``upsample``.

The predictor is trained once per model with the learned masks' objective
(:mod:`prototypes.mask_predictor_training`; Dabkowski & Gal, "Real time image saliency for
black box classifiers", NeurIPS 2017). Localizing a batch of pairs then costs one model pass
over the batch's distinct images (pairs that share an image share its pass) and one decoder
pass for all pairs at once. The map is density-weighted as HDM's and MDM's
(:func:`prototypes.localization.peak_choice.weight_by_density`) and boxed with the same rule
as every method (:func:`prototypes.localization.result.high_activation_box`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hdm.hooks import evaluation_mode
from prototypes.localization.peak_choice import weight_by_density
from prototypes.localization.result import Localization, localization_from_maps
from prototypes.localization.scores import prototype_id_tensor
from prototypes.mask_predictor import MaskPredictor
from prototypes.model import ProtoPNet

__all__ = ["amortized_localization", "check_density_sigma"]


def check_density_sigma(density_sigma: object) -> None:
    """Raise ``ValueError`` unless ``density_sigma`` is a number >= 0 (the option check of
    :func:`prototypes.localization.check_localization_options`, before any model runs)."""
    if (isinstance(density_sigma, bool) or not isinstance(density_sigma, (int, float))
            or density_sigma < 0):
        raise ValueError(f"density_sigma must be a number >= 0, got {density_sigma!r}")


def amortized_localization(model: ProtoPNet, images: torch.Tensor,
                           prototype_ids: torch.Tensor | Sequence[int], *,
                           masker: MaskPredictor | None = None, density_sigma: float = 0.1,
                           percentile: float = 95.0,
                           relative_threshold: float = 0.0) -> Localization:
    """The predicted mask of prototype ``prototype_ids[b]`` in ``images[b]``.

    Args:
        model: the ProtoPNet the predictor was trained for.
        images: (B, 3, H, W) in [0, 1].
        prototype_ids: (B,) one prototype per image.
        masker: the trained predictor (``protoexplain train-masker RUN_DIR`` stores one in
            the run as ``masker.pt``; the command line loads it); moved to the images' device.
        density_sigma: sigma of the density weighting as a share of the image's shorter side
            (0 keeps the predicted mask), as HDM's default.
        percentile, relative_threshold: the box rule
            (:func:`prototypes.localization.result.high_activation_box`).

    Returns:
        ``maps`` (B, H, W) in [0, 1]; ``boxes`` (B, 4) int64.
    """
    check_density_sigma(density_sigma)
    if masker is None:
        raise ValueError("localization method 'amortized' needs masker=<a trained "
                         "MaskPredictor>; 'protoexplain train-masker RUN_DIR' trains one")
    ids = prototype_id_tensor(model, images, prototype_ids)
    masker = masker.to(device=images.device)
    with evaluation_mode(masker):
        maps = masker(model, images, ids).to(images.dtype)
    maps = weight_by_density(maps, density_sigma * min(images.shape[-2:]))
    return localization_from_maps(maps, percentile, relative_threshold)
