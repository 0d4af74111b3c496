"""RISE (Petsiuk, Das & Saenko, "RISE: Randomized input sampling for explanation of
black-box models", BMVC 2018).

``N`` binary grids of ``s x s`` cells, each cell on with probability ``p``, are upsampled
bilinearly to ``(s + 1) * ceil(H / s)`` pixels and cropped at a random shift within one
cell (official code, ``generate_masks``). The saliency is
``S = 1 / (N p) * sum_i f(x * M_i) M_i`` (Eq. 6), with ``f`` the target's softmax
probability for index targets (the paper explains probabilities) or the callable's score.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from hdm.base import Explainer
from hdm.targets import Target


def sample_grids(
    count: int, cells: int, probability: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """RISE's random draws: binary grids ``(count, cells, cells)`` and shifts ``(count, 2)``.

    Shifts are fractions in [0, 1) of one cell (the official code draws whole pixels in
    ``[0, cell)``; :func:`render_masks` rounds the fraction down to pixels).
    """
    grids = torch.rand(count, cells, cells, generator=generator) < probability
    shifts = torch.rand(count, 2, generator=generator)
    return grids, shifts


def render_masks(
    grids: Tensor,
    shifts: Tensor,
    image_size: tuple[int, int],
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """Smooth masks ``(n, H, W)``: grids upsampled to ``(s + 1) * ceil(H / s)`` and shifted."""
    height, width = image_size
    count, cells = grids.shape[0], grids.shape[1]
    cell_h, cell_w = math.ceil(height / cells), math.ceil(width / cells)
    grids = grids.to(device=device, dtype=dtype)[:, None]
    upsampled = F.interpolate(
        grids,
        size=((cells + 1) * cell_h, (cells + 1) * cell_w),
        mode="bilinear",
        align_corners=False,
    )[:, 0]
    shifts = shifts.to(device)
    shift_y = (shifts[:, 0] * cell_h).long()
    shift_x = (shifts[:, 1] * cell_w).long()
    rows = (shift_y[:, None] + torch.arange(height, device=device))[:, :, None]
    columns = (shift_x[:, None] + torch.arange(width, device=device))[:, None, :]
    index = torch.arange(count, device=device)[:, None, None]
    return upsampled[index, rows, columns]


class RISE(Explainer):
    """Randomised input sampling: the score-weighted average of random masks.

    Args:
        model: images -> output (only forward passes).
        num_masks: ``N`` (the paper uses 4000 for ResNet-50, 8000 for VGG16).
        cells: ``s``, grid cells per side (paper: 7).
        probability: ``p``, chance that a cell is kept (paper: 0.5).
        batch_size: images per forward pass (masks x samples are chunked by this).
        softmax: for index targets, weight masks by the class's softmax probability
            (as the paper) rather than its logit. Callable targets are used as given.
        seed: seed of the masks; the same masks serve every sample of the batch.
        progress: tqdm bar over mask chunks.
    """

    def __init__(
        self,
        model: Callable[[Tensor], Any],
        *,
        num_masks: int = 4000,
        cells: int = 7,
        probability: float = 0.5,
        batch_size: int = 256,
        softmax: bool = True,
        seed: int | None = 0,
        progress: bool = False,
    ) -> None:
        super().__init__(model, progress=progress)
        if num_masks < 1 or cells < 1 or batch_size < 1:
            raise ValueError("num_masks, cells and batch_size must be positive")
        if not 0 < probability <= 1:
            raise ValueError(f"probability must lie in (0, 1], got {probability}")
        self.num_masks = num_masks
        self.cells = cells
        self.probability = probability
        self.batch_size = batch_size
        self.softmax = softmax
        self.seed = seed

    def explain(self, images: Tensor, target: Target) -> Tensor:
        batch, _, height, width = images.shape
        self.reference_scores(images, target)
        generator = torch.Generator(device="cpu")
        if self.seed is None:
            generator.seed()
        else:
            generator.manual_seed(self.seed)
        grids, shifts = sample_grids(self.num_masks, self.cells, self.probability, generator)
        per_chunk = max(1, self.batch_size // batch)
        saliency = torch.zeros_like(images[:, 0])
        score_of = target.probability if self.softmax else target.score
        with torch.no_grad():
            for start in tqdm(
                range(0, self.num_masks, per_chunk),
                desc="RISE",
                disable=not self.progress,
                leave=False,
            ):
                chunk = render_masks(
                    grids[start : start + per_chunk],
                    shifts[start : start + per_chunk],
                    (height, width),
                    images.dtype,
                    images.device,
                )
                masked = (chunk[:, None, None] * images[None]).flatten(0, 1)
                scores = (
                    score_of(self.model(masked), len(chunk))
                    .view(len(chunk), batch)
                    .to(images.dtype)
                )
                saliency += torch.einsum("nb,nhw->bhw", scores, chunk)
        return saliency / (self.num_masks * self.probability)
