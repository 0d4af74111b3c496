"""The result of a localization and the box rule: the high-activation box against a direct
NumPy percentile computation, on sparse maps (ties at the minimum) and with the relative
threshold, and the min-max normalisation."""

import cv2
import numpy as np
import pytest
import torch

from prototypes import high_activation_box
from prototypes.localization.result import min_max_normalise
from tests.prototypes.localization.numpy_boxes import direct_box


def test_high_activation_box_matches_a_direct_95th_percentile_computation():
    generator = np.random.default_rng(0)
    smooth = cv2.resize(generator.normal(size=(7, 7)).astype(np.float32), (224, 224),
                        interpolation=cv2.INTER_CUBIC)
    ties = generator.integers(0, 4, size=(30, 20)).astype(np.float32)  # many equal values
    for maps in (smooth[None], generator.normal(size=(6, 19, 23)).astype(np.float32),
                 ties[None]):
        boxes = high_activation_box(torch.from_numpy(maps))
        assert [tuple(box) for box in boxes.tolist()] == [direct_box(m) for m in maps]
    box = high_activation_box(torch.from_numpy(smooth[None]), percentile=50)[0]
    assert tuple(box.tolist()) == direct_box(smooth, 50)


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


def test_min_max_normalise_scales_each_map_and_keeps_constant_maps_finite():
    maps = torch.stack([torch.arange(6.0).view(2, 3) - 2, torch.full((2, 3), 7.0)])
    normalised = min_max_normalise(maps)
    torch.testing.assert_close(normalised[0], torch.arange(6.0).view(2, 3) / 5)
    assert torch.equal(normalised[1], torch.zeros(2, 3))
