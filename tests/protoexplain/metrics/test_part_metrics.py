"""Huang et al.'s part hits, consistency and stability on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from protoexplain.metrics.parts import (
    keypoint_hits,
    map_peaks,
    part_box_hits,
    part_hits,
    perturb_images,
    prototype_consistency,
    prototype_stability,
    scaled_half_sizes,
)


def test_half_size_is_the_original_36_pixels_at_224_and_scales_with_the_image():
    assert scaled_half_sizes((224, 224)) == (36.0, 36.0)
    half_y, half_x = scaled_half_sizes((64, 112))
    assert math.isclose(half_y, 36 * 64 / 224) and math.isclose(half_x, 18.0)


def test_peak_is_the_first_maximum_in_row_major_order():
    maps = torch.zeros(2, 8, 8)
    maps[0, 2, 3] = 1.0
    maps[1, 5, 1] = maps[1, 5, 6] = maps[1, 7, 0] = 2.0
    assert map_peaks(maps).tolist() == [[2, 3], [5, 1]]


def test_part_is_hit_when_its_visible_keypoint_is_in_the_box_around_the_peak_borders_included():
    maps = torch.zeros(1, 8, 8)
    maps[0, 2, 3] = 1.0  # peak at row 2, column 3
    keypoints = torch.tensor([[
        [4.0, 3.0, 1.0],  # x 4, y 3: one pixel off on both axes -> on the border, hit
        [5.0, 2.0, 1.0],  # two columns right -> miss
        [3.0, 2.0, 0.0],  # exactly on the peak but not visible -> miss
        [2.0, 1.0, 1.0],  # one up, one left -> hit
        [3.0, 4.5, 1.0],  # 2.5 rows below -> miss
    ]])
    hits = part_hits(maps, keypoints, (1.0, 1.0))
    assert hits.tolist() == [[True, False, False, True, False]]


def test_keypoint_hits_use_a_box_of_half_sides_y_and_x_around_each_centre():
    centres = torch.tensor([[4.0, 4.0], [0.0, 7.0]])  # (row y, column x)
    keypoints = torch.tensor([
        # 2 rows below (border); 3 columns right (border); on the centre but not visible
        [[4.0, 6.0, 1.0], [7.0, 4.0, 1.0], [4.0, 4.0, 0.0]],
        # on the centre; 3 rows below (> 2); 3 columns left and 1 row below
        [[7.0, 0.0, 1.0], [7.0, 3.0, 1.0], [4.0, 1.0, 1.0]],
    ])
    hits = keypoint_hits(centres, keypoints, (2.0, 3.0))
    assert hits.tolist() == [[True, True, False], [True, False, True]]


def test_prototype_is_consistent_when_one_part_is_hit_in_80_percent_of_the_images_showing_it():
    # Prototype 0: part 0 hit in 4 of 5 images (0.8) -> consistent.
    # Prototype 1: part 0 hit in 3 of 5 (0.6), part 1 hit in 2 of its 3 visible images (0.67)
    # -> not consistent. Prototype 2 has no pairs -> not consistent.
    hits = torch.tensor([[1, 0], [1, 0], [1, 1], [1, 0], [0, 1],
                         [1, 1], [1, 0], [1, 1], [0, 0], [0, 0]], dtype=torch.bool)
    visible = torch.tensor([[1, 1]] * 5 + [[1, 1], [1, 0], [1, 1], [1, 1], [1, 0]],
                           dtype=torch.bool)
    groups = torch.tensor([0] * 5 + [1] * 5)
    consistent = prototype_consistency(hits, visible, groups, num_groups=3)
    assert consistent.tolist() == [True, False, False]
    assert prototype_consistency(hits, visible, groups, 3, threshold=0.6).tolist() == [
        True, True, False]


def test_part_hit_only_counted_over_images_where_the_part_is_visible():
    # The part is visible in 2 of 4 images and hit in both: 100 %, consistent.
    hits = torch.tensor([[True], [True], [False], [False]])
    visible = torch.tensor([[True], [True], [False], [False]])
    assert prototype_consistency(hits, visible, torch.zeros(4, dtype=torch.long), 1).item()


def test_stability_is_the_share_of_images_whose_hit_vector_is_unchanged_under_noise():
    hits = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0]], dtype=torch.bool)
    noisy = torch.tensor([[1, 0], [1, 1], [1, 1], [0, 0], [0, 0]], dtype=torch.bool)
    groups = torch.tensor([0, 0, 0, 0, 1])
    stability = prototype_stability(hits, noisy, groups, num_groups=3)
    assert stability[0].item() == pytest.approx(0.75)
    assert stability[1].item() == 0.0
    assert math.isnan(stability[2].item())


def test_noise_is_added_in_normalised_space_clipped_at_the_bound_and_not_clipped_to_unit_range():
    images = torch.full((4, 3, 16, 16), 0.5)
    std = torch.tensor([0.1, 0.2, 0.4])
    generator = torch.Generator().manual_seed(3)
    noisy = perturb_images(images, std, noise_std=0.2, bound=0.25, generator=generator)
    normalised_noise = (noisy - images) / std.view(1, 3, 1, 1)
    assert normalised_noise.abs().max() <= 0.25 + 1e-6
    assert normalised_noise.abs().max() > 0.24  # some draws reach the clip
    # Clipping N(0, 1) at c = 1.25 leaves E[x^2] = erf(c / sqrt 2) - 2 c phi(c) + c^2 P(|x| > c).
    c = 1.25
    phi = math.exp(-c * c / 2) / math.sqrt(2 * math.pi)
    inside = math.erf(c / math.sqrt(2))
    clipped_std = 0.2 * math.sqrt(inside - 2 * c * phi + c * c * (1 - inside))
    assert normalised_noise.std().item() == pytest.approx(clipped_std, rel=0.05)
    again = perturb_images(images, std, generator=torch.Generator().manual_seed(3))
    assert torch.equal(noisy, again)
    bright = perturb_images(torch.ones(1, 3, 16, 16), torch.ones(3), noise_std=1.0, bound=1.0)
    assert bright.max() > 1.0


def test_the_box_on_a_chosen_part_hits_the_parts_around_its_keypoint_and_none_hits_nothing():
    # keypoints (x, y, visible): parts 0 and 1 are 5 px apart, part 3 lies 2 px from part 2
    keypoints = torch.tensor([[[10.0, 10.0, 1.0], [15.0, 10.0, 1.0], [40.0, 10.0, 1.0],
                               [42.0, 10.0, 1.0]]]).repeat(3, 1, 1)
    hits = part_box_hits(keypoints, torch.tensor([2, -1, 1]), (6.0, 6.0))
    assert hits.tolist() == [[False, False, True, True],
                             [False, False, False, False],
                             [True, True, False, False]]
