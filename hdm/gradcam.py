"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual explanations from deep networks via
gradient-based localization", ICCV 2017).

For a layer with activations ``A`` ``(B, K, h, w)`` and the target's score ``y``:
``alpha_k = mean_ij dy/dA_kij`` (Eq. 1) and ``L = ReLU(sum_k alpha_k A_k)`` (Eq. 2),
upsampled bilinearly to the image. With several layers the per-layer maps, each
rescaled to [0, 1], are averaged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from hdm.base import Explainer
from hdm.hooks import record_activations
from hdm.layers import Layer, last_convolution, resolve_layers
from hdm.maps import normalize_maps, resize_maps
from hdm.targets import Target


class GradCAM(Explainer):
    """Gradient-weighted class activation map of one or more layers.

    Args:
        model: an ``nn.Module`` (or any callable when ``layers`` are modules it runs).
        layers: modules or dotted names; default: the last ``nn.Conv2d`` with a spatial output.
        progress: unused (one forward and one backward pass); kept for a uniform signature.
    """

    def __init__(
        self,
        model: Callable[[Tensor], Any],
        *,
        layers: Sequence[Layer] | Layer | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(model, progress=progress)
        self.layers = None if layers is None else resolve_layers(model, layers)

    def explain(self, images: Tensor, target: Target) -> Tensor:
        layers = self.layers if self.layers is not None else [last_convolution(self.model, images)]
        inputs = images.clone().requires_grad_(True)
        with torch.enable_grad(), record_activations(layers) as recorded:
            output = self.model(inputs)
            target.check(output)
            score = target.score(output)
            activations = [recorded[i] for i in range(len(layers))]
            gradients = torch.autograd.grad(score.sum(), activations)
        maps = []
        for activation, gradient in zip(activations, gradients, strict=True):
            weights = gradient.mean(dim=(2, 3), keepdim=True)
            cam = (weights * activation).sum(dim=1).relu()
            maps.append(normalize_maps(resize_maps(cam.detach(), tuple(images.shape[-2:]))))
        return torch.stack(maps).mean(dim=0)
