"""SISE (Sattarzadeh et al., "Explaining convolutional neural networks through
attribution-based input sampling and block-wise feature aggregation", AAAI 2021).

1. Feature extraction: the activations ``A^l`` of the last layer of each block
   (:func:`hdm.layers.block_ends`).
2. Feature filtering: ``alpha^l_k = mean_ij dy/dA^l_kij``; channels with
   ``alpha_k > gradient_threshold * max_k alpha_k`` and ``alpha_k > 0`` are kept
   (positive-gradient selection; ``gradient_threshold`` is the paper's mu, default 0).
3. Attribution-based input sampling: each kept map, bilinearly upsampled and rescaled to
   [0, 1], is a mask ``M^l_k``; the layer's map is ``V^l = sum_k f(x * M^l_k) M^l_k`` with
   ``f`` the target's softmax probability (index targets) or score (callables).
4. Block-wise fusion, shallow to deep, with Otsu gates: ``F <- norm(V^1)``, then
   ``F <- norm((F + norm(V^l)) * [norm(V^l) > Otsu(norm(V^l))])``; the deeper,
   more class-specific map gates the finer detail gathered so far.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from hdm.base import Explainer
from hdm.hooks import record_activations
from hdm.layers import Layer, block_ends, resolve_layers
from hdm.maps import normalize_maps, otsu_thresholds, resize_maps
from hdm.targets import Target


def fuse_blocks(maps: Sequence[Tensor]) -> Tensor:
    """SISE's cascaded Otsu-gated fusion of per-block maps ``(B, H, W)``, shallow to deep."""
    fused = normalize_maps(maps[0])
    for block_map in maps[1:]:
        block_map = normalize_maps(block_map)
        gate = block_map > otsu_thresholds(block_map)[:, None, None]
        fused = normalize_maps((fused + block_map) * gate)
    return fused


class SISE(Explainer):
    """Semantic input sampling with block-wise feature aggregation.

    Args:
        model: an ``nn.Module`` (or any callable when ``layers`` are modules it runs).
        layers: modules or dotted names, shallow to deep; default: the last module of
            every resolution block.
        gradient_threshold: mu; keep channels whose average gradient exceeds
            ``mu * max`` (and 0).
        batch_size: images per forward pass when scoring masks.
        softmax: for index targets, score masks by the softmax probability (as the paper).
        progress: tqdm bar over mask chunks.
    """

    def __init__(
        self,
        model: Callable[[Tensor], Any],
        *,
        layers: Sequence[Layer] | Layer | None = None,
        gradient_threshold: float = 0.0,
        batch_size: int = 256,
        softmax: bool = True,
        progress: bool = False,
    ) -> None:
        super().__init__(model, progress=progress)
        if not 0 <= gradient_threshold < 1:
            raise ValueError(f"gradient_threshold must lie in [0, 1), got {gradient_threshold}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.layers = None if layers is None else resolve_layers(model, layers)
        self.gradient_threshold = gradient_threshold
        self.batch_size = batch_size
        self.softmax = softmax

    def explain(self, images: Tensor, target: Target) -> Tensor:
        layers = self.layers if self.layers is not None else block_ends(self.model, images)
        inputs = images.clone().requires_grad_(True)
        with torch.enable_grad(), record_activations(layers) as recorded:
            output = self.model(inputs)
            target.check(output)
            activations = [recorded[i] for i in range(len(layers))]
            gradients = torch.autograd.grad(target.score(output).sum(), activations)
        return fuse_blocks(
            [
                self.layer_map(images, target, a.detach(), g)
                for a, g in zip(activations, gradients, strict=True)
            ]
        )

    def layer_map(
        self, images: Tensor, target: Target, activation: Tensor, gradient: Tensor
    ) -> Tensor:
        """``V^l`` ``(B, H, W)``: kept feature maps as masks, weighted by the masked score.

        Samples keep different channels. Forward pass ``r`` masks every sample with its
        own ``r``-th kept channel (a zero-weight filler once a sample has run out), so the
        batch costs ``max_b(kept_b)`` passes of ``B`` images rather than one pass per
        channel kept by any sample.
        """
        batch, _, height, width = images.shape
        alpha = gradient.mean(dim=(2, 3))
        keep = (alpha > 0) & (
            alpha > self.gradient_threshold * alpha.max(dim=1, keepdim=True).values
        )
        kept = keep.sum(dim=1)
        order = keep.to(torch.int8).argsort(dim=1, descending=True, stable=True)
        score_of = target.probability if self.softmax else target.score
        per_chunk = max(1, self.batch_size // batch)
        samples = torch.arange(batch, device=images.device)[:, None]
        layer_map = torch.zeros_like(images[:, 0])
        with torch.no_grad():
            for start in tqdm(
                range(0, int(kept.max()), per_chunk),
                desc="SISE",
                disable=not self.progress,
                leave=False,
            ):
                ranks = torch.arange(start, min(start + per_chunk, int(kept.max())))
                ranks = ranks.to(images.device)
                maps = activation[samples, order[:, ranks]]
                masks = normalize_maps(resize_maps(maps, (height, width)).flatten(0, 1))
                masks = masks.view(batch, len(ranks), height, width)
                masked = (masks.transpose(0, 1)[:, :, None] * images[None]).flatten(0, 1)
                scores = score_of(self.model(masked), len(ranks)).view(len(ranks), batch)
                valid = (ranks[None] < kept[:, None]).T.to(images.dtype)
                weights = scores.to(images.dtype) * valid
                layer_map += torch.einsum("rb,brhw->bhw", weights, masks)
        return layer_map
