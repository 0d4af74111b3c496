"""The high-activation box on sparse maps: ties at the minimum and the relative threshold."""

import pytest
import torch

from prototypes import high_activation_box


def test_sparse_map_is_boxed_around_its_non_minimal_pixels_not_the_whole_image():
    maps = torch.zeros(2, 20, 30)
    maps[0, 4:7, 10:12] = torch.tensor([1.0, 2.0, 3.0])[:, None]  # 6 of 600 pixels
    maps[1] = -1.0  # a constant map: nothing stands out
    assert high_activation_box(maps).tolist() == [[4, 7, 10, 12], [0, 20, 0, 30]]


def test_relative_threshold_drops_faint_pixels_the_percentile_keeps():
    maps = torch.zeros(1, 20, 20)
    maps[0, 0, :] = 0.01  # faint but above the 95th percentile of a mostly-zero map
    maps[0, 10:12, 5:8] = 1.0
    assert high_activation_box(maps).tolist() == [[0, 12, 0, 20]]
    assert high_activation_box(maps, relative_threshold=0.2).tolist() == [[10, 12, 5, 8]]


def test_relative_threshold_must_be_a_fraction():
    with pytest.raises(ValueError, match=r"relative_threshold must be a number in \[0, 1\]"):
        high_activation_box(torch.rand(1, 5, 5), relative_threshold=1.5)
