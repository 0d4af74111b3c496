"""Pieces for comparing a map with a ground-truth region that :mod:`hdm.metrics` lacks.

Energy inside a region (``hdm.metrics.energy_pointing_game``, Wang et al., "Score-CAM",
CVPRW 2020) and the pointing game (``hdm.metrics.pointing_game``, TorchRay's protocol: the
map's first maximum hits when a region pixel lies strictly closer than ``tolerance``) come
from :mod:`hdm.metrics`. Here: TorchRay's tolerance scaled to our image size, tight boxes
of masks, and the IoU of boxes ``y0, y1, x0, x1`` (end-exclusive, pixels).
"""

from __future__ import annotations

import torch
from torch import Tensor

TORCHRAY_TOLERANCE = 15.0
TORCHRAY_IMAGE_SIZE = 224.0
"""facebookresearch/TorchRay ``torchray/benchmark/pointing_game.py``: ``tolerance=15`` at
224 px."""


def scaled_tolerance(image_size: tuple[int, int]) -> float:
    """TorchRay's 15-pixel tolerance at 224 px scaled to an (H, W) image by its shorter
    side (64 px: 4.29 px)."""
    return TORCHRAY_TOLERANCE * min(image_size) / TORCHRAY_IMAGE_SIZE


def mask_boxes(masks: Tensor) -> tuple[Tensor, Tensor]:
    """Tight boxes of bool masks (B, H, W): (boxes (B, 4) long ``y0, y1, x0, x1``
    end-exclusive, non-empty (B,) bool). Empty masks get the box (0, 0, 0, 0)."""
    _, height, width = masks.shape
    rows, columns = masks.any(dim=2), masks.any(dim=1)

    def span(hit: Tensor, length: int) -> tuple[Tensor, Tensor]:
        first = hit.int().argmax(dim=1)
        end = length - hit.flip(1).int().argmax(dim=1)
        present = hit.any(dim=1)
        return first.where(present, 0), end.where(present, 0)

    y0, y1 = span(rows, height)
    x0, x1 = span(columns, width)
    return torch.stack([y0, y1, x0, x1], dim=1).long(), rows.any(dim=1)


def box_iou(first: Tensor, second: Tensor) -> Tensor:
    """IoU of paired boxes (B, 4) ``y0, y1, x0, x1`` (end-exclusive): float (B,); 0 when both
    boxes are empty."""
    first, second = first.float(), second.float()
    height = (torch.minimum(first[:, 1], second[:, 1])
              - torch.maximum(first[:, 0], second[:, 0])).clamp(min=0)
    width = (torch.minimum(first[:, 3], second[:, 3])
             - torch.maximum(first[:, 2], second[:, 2])).clamp(min=0)
    intersection = height * width

    def area(box: Tensor) -> Tensor:
        return (box[:, 1] - box[:, 0]).clamp(min=0) * (box[:, 3] - box[:, 2]).clamp(min=0)

    union = area(first) + area(second) - intersection
    return intersection / union.clamp(min=1e-12)
