"""A hand-built ProtoPNet whose prototypes are pure colours, and noisy images holding squares
of those colours: where each prototype's evidence lies is known exactly.

The latent map is the mean colour of each 4x4 block (32 px -> 8x8), shifted ``shift`` cells
down and right (zeros enter from the top and left). The shift mimics deep trunks whose latent
cells do not sit over the pixels they summarise: the similarity map then peaks ``4 * shift``
pixels away from the square, so ``upsample`` misses it, while methods that perturb or
differentiate the input still find it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prototypes import ProtoPNet

COLOURS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
"""Prototype 0 is pure red, prototype 1 pure green."""

SQUARES = (((14, 22, 6, 14), (3, 11, 20, 28)),
           ((3, 11, 12, 20), (20, 28, 2, 10)),
           ((16, 24, 17, 25), (2, 10, 2, 10)))
"""Per image, the y0, y1, x0, x1 (end-exclusive) of its 8 px square of each colour. Every
square holds at least one whole 4x4 block: the only latent cells equal to a prototype."""


class ShiftCells(nn.Module):
    """Moves a (B, C, h, w) map ``cells`` positions down and right, filling with zeros."""

    def __init__(self, cells: int) -> None:
        super().__init__()
        self.cells = cells

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        height, width = latent.shape[-2:]
        return F.pad(latent, (self.cells, 0, self.cells, 0))[..., :height, :width]


def colour_model(shift: int = 2) -> ProtoPNet:
    """Two classes, one prototype each (:data:`COLOURS`); latent = shifted 4x4 block means of
    the image (no normalisation)."""
    model = ProtoPNet("small_cnn", len(COLOURS), prototypes_per_class=1, prototype_dim=3,
                      image_size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                      backbone_options={"width": 1})
    model.features = nn.Sequential(nn.AvgPool2d(4), ShiftCells(shift))
    model.add_on_layers = nn.Identity()
    with torch.no_grad():
        model.prototype_vectors.copy_(torch.tensor(COLOURS).view(len(COLOURS), 3, 1, 1))
    return model


def colour_square_pairs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (image, prototype) pair of three uniform-noise images holding one square per
    colour: images (6, 3, 32, 32), prototype ids (6,), and the square of the pair's colour as
    (6, 32, 32) boolean masks."""
    noise = torch.rand(len(SQUARES), 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    images, ids, inside = [], [], []
    for image, squares in zip(noise, SQUARES, strict=True):
        for (y0, y1, x0, x1), colour in zip(squares, COLOURS, strict=True):
            image[:, y0:y1, x0:x1] = torch.tensor(colour).view(3, 1, 1)
        for prototype, (y0, y1, x0, x1) in enumerate(squares):
            square = torch.zeros(32, 32, dtype=torch.bool)
            square[y0:y1, x0:x1] = True
            images.append(image)
            ids.append(prototype)
            inside.append(square)
    return torch.stack(images), torch.tensor(ids), torch.stack(inside)
