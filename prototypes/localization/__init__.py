"""Where a prototype lives in an image: one batched function per method, chosen by name.

``localize(model, images, prototype_ids, method=...)`` dispatches through
:data:`LOCALIZATION_METHODS`; a new method is a function with the signature
``(model, images, prototype_ids, **options) -> Localization`` added to that dict.

Methods, a module per family:

- ``upsample``: the original ProtoPNet's bicubic upsampling of the similarity map
  (:mod:`prototypes.localization.upsample`).
- ``mdm``, ``hdm``, ``neuromask``: learned masks (:mod:`prototypes.localization.learned_masks`),
  whose peak is placed by :mod:`prototypes.localization.peak_choice`.
- ``amortized``: the mask of a predictor trained once per model
  (:mod:`prototypes.localization.amortized`, :mod:`prototypes.mask_predictor`).
- ``smoothgrad``: SmoothGrad of the prototype's score (:mod:`prototypes.localization.gradients`).
- ``receptive_field``, ``random``, ``centre``: baselines
  (:mod:`prototypes.localization.baselines`).

What they share: the result type and the box rule (:mod:`prototypes.localization.result`) and
the score of an (image, prototype) pair (:mod:`prototypes.localization.scores`). Every method
but ``receptive_field`` boxes its map with the same rule (:func:`high_activation_box`, options
``percentile`` and ``relative_threshold``), so boxes are comparable across methods.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from prototypes.localization.amortized import amortized_localization, check_density_sigma
from prototypes.localization.baselines import (
    centre_localization,
    random_localization,
    receptive_field_localization,
)
from prototypes.localization.gradients import smoothgrad_localization
from prototypes.localization.learned_masks import (
    LEARNED_MASK_METHODS,
    check_learned_mask_options,
)
from prototypes.localization.result import Localization, check_box_rule, high_activation_box
from prototypes.localization.scores import SCORES, PairScores
from prototypes.localization.upsample import upsample_localization
from prototypes.model import ProtoPNet

__all__ = ["LOCALIZATION_METHODS", "SCORES", "Localization", "PairScores",
           "check_localization_options", "high_activation_box", "localize"]

LocalizationMethod = Callable[..., Localization]

LOCALIZATION_METHODS: dict[str, LocalizationMethod] = {
    "upsample": upsample_localization,
    "receptive_field": receptive_field_localization,
    **LEARNED_MASK_METHODS,
    "amortized": amortized_localization,
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
    (:func:`prototypes.localization.learned_masks.check_learned_mask_options`). Configs and
    studies call it before anything runs, so that a misspelt option does not end a run after
    training."""
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
    if method == "amortized":
        check_density_sigma(options.get("density_sigma", 0.1))


def localize(model: ProtoPNet, images: torch.Tensor,
             prototype_ids: torch.Tensor | Sequence[int], method: str = "upsample",
             **options) -> Localization:
    """Localize prototype ``prototype_ids[b]`` in ``images[b]`` (B, 3, H, W in [0, 1]) for the
    whole batch with the method called ``method``; ``options`` go to that method (checked
    first by :func:`check_localization_options`)."""
    check_localization_options(method, options)
    return LOCALIZATION_METHODS[method](model, images, prototype_ids, **options)
