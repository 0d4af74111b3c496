"""Localization against labelled boxes: where each finding of an image is, as boxes.

Multi-label sets such as ChestX-ray14 (``BBox_List_2017.csv``) and SyntheticRadiographs give
their ground truth as ``boxes`` (N, 4) ``y0, y1, x0, x1`` with one finding index per box in
``box_labels`` (N,), not as masks. A pair (image, prototype of class ``c``) is scored against
the boxes of finding ``c`` in that image (an image may have several, e.g. two nodules):

- ``energy_box``: the share of the map's mass inside the union of those boxes (the
  energy-based pointing game, :func:`hdm.metrics.energy_pointing_game`);
- ``pointing_box``: the map's maximum lies in one of them, or closer than the pointing
  tolerance (TorchRay's pointing game, :func:`hdm.metrics.pointing_game`);
- ``iou_box``: the IoU of the method's high-activation box with the best-matching one
  (:func:`protoexplain.metrics.regions.box_iou`), the localization criterion of ChestX-ray8
  (Wang et al., CVPR 2017, which counts a box as found at IoU above a threshold).

A pixel belongs to a box when its centre does (``y0 <= row + 0.5 < y1``), which for the
integer, end-exclusive boxes of generated sets is exactly ``y0 <= row < y1`` and also serves
the fractional boxes of resized ChestX-ray14 images. Pairs whose image has no box of the
finding (or only boxes that cover no pixel centre) are marked absent, and their metrics skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from protoexplain.metrics.regions import box_iou

NO_BOX = -1
"""The label of padding rows in :func:`pad_boxes`."""


def pad_boxes(boxes: Sequence[Tensor], labels: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack ragged per-image boxes.

    Args:
        boxes: per image, (N_i, 4) ``y0, y1, x0, x1`` in pixels.
        labels: per image, (N_i,) the finding index of each box.

    Returns:
        (N, M, 4) float boxes and (N, M) long labels, ``M = max N_i`` (at least 1), padded
        with zero boxes labelled :data:`NO_BOX`.
    """
    if len(boxes) != len(labels):
        raise ValueError(f"got boxes for {len(boxes)} images and labels for {len(labels)}")
    most = max([1, *(int(b.shape[0]) for b in boxes)])
    padded = torch.zeros(len(boxes), most, 4)
    padded_labels = torch.full((len(boxes), most), NO_BOX, dtype=torch.long)
    for row, (image_boxes, image_labels) in enumerate(zip(boxes, labels, strict=True)):
        count = int(image_boxes.shape[0])
        if image_boxes.shape != (count, 4) or image_labels.shape != (count,):
            raise ValueError(f"image {row}: boxes must be (N, 4) with labels (N,), got "
                             f"{tuple(image_boxes.shape)} and {tuple(image_labels.shape)}")
        padded[row, :count] = image_boxes.float()
        padded_labels[row, :count] = image_labels.long()
    return padded, padded_labels


def finding_regions(boxes: Tensor, labels: Tensor, classes: Tensor,
                    size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The pixels of each pair's finding.

    Args:
        boxes: (B, M, 4) ``y0, y1, x0, x1`` (see :func:`pad_boxes`).
        labels: (B, M) finding of each box (:data:`NO_BOX` for padding).
        classes: (B,) the finding of each pair (its prototype's class).
        size: (H, W) of the images.

    Returns:
        regions (B, H, W) bool, the union of the pair's finding boxes; present (B,) bool,
        whether that union covers any pixel.
    """
    height, width = size
    rows = torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5
    columns = torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5
    inside_rows = (rows >= boxes[..., 0:1]) & (rows < boxes[..., 1:2])  # (B, M, H)
    inside_columns = (columns >= boxes[..., 2:3]) & (columns < boxes[..., 3:4])  # (B, M, W)
    matching = labels == classes[:, None]  # (B, M)
    per_box = inside_rows[..., :, None] & inside_columns[..., None, :]  # (B, M, H, W)
    regions = (per_box & matching[..., None, None]).any(dim=1)
    return regions, regions.flatten(1).any(dim=1)


def best_box_iou(predicted: Tensor, boxes: Tensor, labels: Tensor,
                 classes: Tensor) -> tuple[Tensor, Tensor]:
    """IoU of each pair's predicted box with the best-matching box of its finding.

    Args:
        predicted: (B, 4) ``y0, y1, x0, x1``, e.g. a localization's high-activation box.
        boxes, labels, classes: as :func:`finding_regions`.

    Returns:
        iou (B,) float (0 where the finding has no box), found (B,) bool, whether it has one.
    """
    batch, most = labels.shape
    repeated = predicted.float()[:, None, :].expand(batch, most, 4).reshape(-1, 4)
    iou = box_iou(repeated, boxes.reshape(-1, 4)).view(batch, most)
    matching = labels == classes[:, None]
    best = iou.masked_fill(~matching, 0.0).max(dim=1).values
    return best, matching.any(dim=1)
