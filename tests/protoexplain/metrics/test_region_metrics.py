"""Pointing tolerance, tight boxes of masks and box IoU on hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from protoexplain.metrics.regions import box_iou, mask_boxes, scaled_tolerance


def test_tolerance_is_torchrays_15_pixels_at_224_scaled_by_the_shorter_side():
    assert scaled_tolerance((224, 224)) == 15.0
    assert scaled_tolerance((64, 128)) == pytest.approx(15 * 64 / 224)


def test_mask_boxes_are_tight_end_exclusive_and_flag_empty_masks():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, 2:5, 3] = True
    masks[0, 4, 6] = True
    boxes, present = mask_boxes(masks)
    assert boxes.tolist() == [[2, 5, 3, 7], [0, 0, 0, 0]]
    assert present.tolist() == [True, False]


def test_box_iou_of_overlapping_disjoint_and_identical_boxes():
    first = torch.tensor([[0, 4, 0, 4], [0, 2, 0, 2], [1, 3, 1, 5]])
    second = torch.tensor([[2, 6, 2, 6], [5, 7, 5, 7], [1, 3, 1, 5]])
    # 2x2 overlap of two 16-pixel boxes: 4 / 28.
    assert box_iou(first, second).tolist() == pytest.approx([4 / 28, 0.0, 1.0])
