"""Where a prototype lives in an image: one batched function per method, chosen by name.

``localize(model, images, prototype_ids, method=...)`` dispatches through
:data:`LOCALIZATION_METHODS`; a new method is a function with the signature
``(model, images, prototype_ids, **options) -> Localization`` added to that dict. What the
methods share (the result type, the box rule, normalisation) is in
:mod:`prototypes.localization_base`.

Methods:

- ``upsample`` (here): the original ProtoPNet's (cfchen-duke/ProtoPNet ``push.py`` and
  ``local_analysis.py``): the prototype's similarity map over latent positions is upsampled
  to the image size with bicubic interpolation (``cv2.resize(..., INTER_CUBIC)`` there,
  ``F.interpolate(mode="bicubic", align_corners=False)`` here: the same cubic kernel, a =
  -0.75, and pixel-centre alignment), and the box is the bounding box of the pixels at or
  above the map's 95th percentile (``helpers.find_high_activation_crop``).
- ``receptive_field`` (here): the receptive field of the most similar latent position (the
  patch the prototype matched), as a binary map and its box.
- ``mdm``, ``hdm``, ``neuromask``: learned masks (:mod:`prototypes.learned_masks`).
- ``smoothgrad``: SmoothGrad of the prototype's score (:mod:`prototypes.gradient_localization`).
- ``random``, ``centre``: model-blind baselines (:mod:`prototypes.trivial_localization`).

Every method but ``receptive_field`` boxes its map with the same rule
(:func:`high_activation_box`, options ``percentile`` and ``relative_threshold``), so boxes are
comparable across methods.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from prototypes.gradient_localization import smoothgrad_localization
from prototypes.learned_masks import LEARNED_MASK_METHODS, check_learned_mask_options
from prototypes.localization_base import (
    Localization,
    check_box_rule,
    high_activation_box,
    localization_from_maps,
    min_max_normalise,
    prototype_similarity_maps,
    upsample_maps,
)
from prototypes.model import ProtoPNet
from prototypes.receptive_field import receptive_field_boxes
from prototypes.trivial_localization import centre_localization, random_localization

__all__ = ["LOCALIZATION_METHODS", "Localization", "check_localization_options",
           "high_activation_box", "localize",
           "min_max_normalise", "receptive_field_localization", "upsample_localization",
           "upsample_maps"]


def upsample_localization(model: ProtoPNet, images: torch.Tensor,
                          prototype_ids: torch.Tensor | Sequence[int], *,
                          percentile: float = 95.0,
                          relative_threshold: float = 0.0) -> Localization:
    """The original ProtoPNet's localization (see the module docstring).

    The box comes from the upsampled similarity map itself, as in the original; ``maps`` is
    that map min-max normalised per image (an exactly constant map becomes zeros). With the
    ``linear`` activation the original upsamples ``max_dist - d`` instead of ``-d``: a
    constant offset, which changes neither. ``relative_threshold`` (0: the original rule)
    is explained in :func:`high_activation_box`.
    """
    chosen = prototype_similarity_maps(model, images, prototype_ids)  # (B, h, w)
    upsampled = upsample_maps(chosen, tuple(images.shape[-2:]))
    return localization_from_maps(upsampled, percentile, relative_threshold)


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


LocalizationMethod = Callable[..., Localization]

LOCALIZATION_METHODS: dict[str, LocalizationMethod] = {
    "upsample": upsample_localization,
    "receptive_field": receptive_field_localization,
    **LEARNED_MASK_METHODS,
    "smoothgrad": smoothgrad_localization,
    "random": random_localization,
    "centre": centre_localization,
}
"""Localization methods by name: ``(model, images, prototype_ids, **options) -> Localization``."""


def _method(method: str) -> LocalizationMethod:
    try:
        return LOCALIZATION_METHODS[method]
    except KeyError:
        raise ValueError(f"unknown localization method {method!r}; choose one of "
                         f"{sorted(LOCALIZATION_METHODS)}") from None


def check_localization_options(method: str, options: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` if :func:`localize` would refuse ``method`` or the names of its
    ``options``, or the values that need no model: the box rule's and the learned masks'
    (:func:`prototypes.learned_masks.check_learned_mask_options`). Configs and studies call it
    before anything runs, so that a misspelt option does not end a run after training."""
    function = _method(method)
    if method in LEARNED_MASK_METHODS:
        check_learned_mask_options(method, dict(options))
        return
    signature = inspect.signature(function)
    try:
        signature.bind(None, None, None, **options)
    except TypeError as error:
        known = [name for name in signature.parameters
                 if signature.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY]
        raise ValueError(f"localization method {method!r}: {error}; its options: "
                         f"{', '.join(known) or 'none'}") from None
    check_box_rule(options.get("percentile", 95.0), options.get("relative_threshold", 0.0))


def localize(model: ProtoPNet, images: torch.Tensor,
             prototype_ids: torch.Tensor | Sequence[int], method: str = "upsample",
             **options) -> Localization:
    """Localize prototype ``prototype_ids[b]`` in ``images[b]`` (B, 3, H, W in [0, 1]) for the
    whole batch with the method called ``method``; ``options`` go to that method (checked
    first by :func:`check_localization_options`)."""
    check_localization_options(method, options)
    return LOCALIZATION_METHODS[method](model, images, prototype_ids, **options)
