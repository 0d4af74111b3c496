"""The call shape shared by every explainer: ``explainer(images, targets) -> (B, H, W)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from hdm.hooks import explaining
from hdm.maps import normalize_maps
from hdm.targets import Target, Targets


def check_images(images: Any) -> Tensor:
    """Validate a batch of images ``(B, C, H, W)`` with a floating dtype."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a Tensor (B, C, H, W), got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point in [0, 1], got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch")
    return images


class Explainer:
    """Base class: validates inputs, freezes the model, normalises the maps.

    Subclasses implement :meth:`explain`, returning one non-negative-or-real map per
    sample ``(B, H, W)``; the call returns it rescaled per sample to [0, 1] (min to 0,
    max to 1), detached, on ``images.device`` and in ``images.dtype``.

    Args:
        model: any callable from images ``(B, C, H, W)`` to an output; an ``nn.Module`` is
            put in eval mode with frozen parameters while explaining, then restored.
        progress: show tqdm progress bars over long loops.
    """

    def __init__(self, model: Callable[[Tensor], Any], *, progress: bool = False) -> None:
        if not callable(model):
            raise TypeError(
                f"model must be callable (images -> output), got {type(model).__name__}"
            )
        self.model = model
        self.progress = progress

    def __call__(self, images: Tensor, targets: Targets) -> Tensor:
        """Saliency ``(B, H, W)`` in [0, 1] of ``targets`` (indices or callable) in ``images``."""
        images = check_images(images)
        target = Target(targets, images.shape[0], images.device)
        with explaining(self.model):
            maps = self.explain(images.detach(), target)
        return normalize_maps(maps.detach()).to(images.dtype)

    def explain(self, images: Tensor, target: Target) -> Tensor:
        """Raw maps ``(B, H, W)``; called with the model frozen and in eval mode."""
        raise NotImplementedError

    def reference_output(self, images: Tensor, target: Target) -> Any:
        """The model's output on the unperturbed images, after validating the targets on it."""
        with torch.no_grad():
            output = self.model(images)
        target.check(output)
        return output

    def reference_scores(self, images: Tensor, target: Target) -> Tensor:
        """The target's score ``(B,)`` on the unperturbed images (validates the targets)."""
        return target.score(self.reference_output(images, target)).to(images.dtype)
