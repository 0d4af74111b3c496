"""Ground truth derived from masks: part keypoints and tight boxes."""

import torch

from protoexplain.data.ground_truth import box_from_mask, keypoints_from_masks


def test_keypoints_are_the_mean_column_and_row_of_each_part_and_absent_parts_are_zero():
    masks = torch.zeros(3, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:6] = True  # rows 1-2, columns 2-5
    masks[1, 4, 7] = True
    keypoints = keypoints_from_masks(masks)
    assert keypoints.dtype == torch.float32
    assert keypoints.tolist() == [[3.5, 1.5, 1.0], [7.0, 4.0, 1.0], [0.0, 0.0, 0.0]]


def test_boxes_are_tight_end_exclusive_and_empty_masks_have_none():
    mask = torch.zeros(6, 8, dtype=torch.bool)
    mask[1:3, 2:6] = True
    mask[4, 3] = True
    box = box_from_mask(mask)
    assert box.dtype == torch.float32 and box.tolist() == [[1.0, 5.0, 2.0, 6.0]]
    assert box_from_mask(torch.zeros(4, 4, dtype=torch.bool)).shape == (0, 4)
