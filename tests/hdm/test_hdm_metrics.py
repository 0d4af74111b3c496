"""Each metric against values computed by hand on tiny examples."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from hdm import metrics

# One 1-channel 2x2 image whose pixels sum to 1; the "model" outputs that sum as its only
# logit, so with ``softmax=False`` every curve point is the sum of the pixels left.
IMAGE = torch.tensor([[[[0.4, 0.3], [0.2, 0.1]]]])
SALIENCY = torch.tensor([[[1.0, 0.5], [0.25, 0.0]]])  # order: (0,0), (0,1), (1,0), (1,1)
FIRST_CLASS = torch.tensor([0])


def pixel_sum(images: Tensor) -> Tensor:
    return images.flatten(1).sum(dim=1, keepdim=True)


def test_deletion_curve_and_area_match_hand_computation():
    curves = metrics.causal_curves(
        pixel_sum,
        IMAGE,
        SALIENCY,
        FIRST_CLASS,
        mode="deletion",
        substrate="zero",
        pixels_per_step=1,
        softmax=False,
    )
    torch.testing.assert_close(curves, torch.tensor([[1.0, 0.6, 0.3, 0.1, 0.0]]))
    area = metrics.deletion_auc(
        pixel_sum, IMAGE, SALIENCY, FIRST_CLASS, pixels_per_step=1, softmax=False
    )
    torch.testing.assert_close(area, torch.tensor([(2.0 - 1.0 / 2 - 0.0 / 2) / 4]))


def test_last_deletion_step_may_change_fewer_pixels():
    # 3 pixels per step on 4 pixels: states after 0, 3 and 4 deletions.
    area = metrics.deletion_auc(
        pixel_sum, IMAGE, SALIENCY, FIRST_CLASS, pixels_per_step=3, softmax=False
    )
    torch.testing.assert_close(area, torch.tensor([(1.0 + 0.1 + 0.0 - 0.5) / 2]))


def test_insertion_from_zero_adds_the_most_salient_pixels_first():
    area = metrics.insertion_auc(
        pixel_sum, IMAGE, SALIENCY, FIRST_CLASS, substrate="zero", pixels_per_step=1, softmax=False
    )
    torch.testing.assert_close(area, torch.tensor([(0.0 + 0.4 + 0.7 + 0.9 + 1.0 - 0.5) / 4]))


def test_insertion_from_blur_of_a_flat_image_is_flat():
    flat = torch.full((1, 3, 8, 8), 0.5)
    area = metrics.insertion_auc(pixel_sum, flat, torch.rand(1, 8, 8), FIRST_CLASS, softmax=False)
    torch.testing.assert_close(area, torch.tensor([96.0]))


def test_deletion_scores_index_targets_by_softmax_probability():
    def two_logits(images: Tensor) -> Tensor:
        return torch.cat([pixel_sum(images), torch.zeros(len(images), 1)], dim=1)

    curves = metrics.causal_curves(
        two_logits,
        IMAGE,
        SALIENCY,
        FIRST_CLASS,
        mode="deletion",
        substrate="zero",
        pixels_per_step=4,
    )
    torch.testing.assert_close(curves, torch.tensor([[1 / (1 + math.exp(-1.0)), 0.5]]))


def test_area_under_curve_is_the_normalised_trapezoid():
    torch.testing.assert_close(
        metrics.auc(torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])), torch.tensor([1.0, 0.5])
    )


def test_pointing_game_hits_within_a_strict_pixel_tolerance():
    saliency = torch.zeros(3, 5, 5)
    saliency[:, 0, 0] = 1.0
    regions = torch.zeros(3, 5, 5, dtype=torch.bool)
    regions[0, 0, 3] = True  # 3 px away: a miss at tolerance 3, a hit at 4
    regions[1, 0, 0] = True  # the maximum itself
    # regions[2] is empty: skipped (NaN)
    at_three = metrics.pointing_game(saliency, regions, tolerance=3)
    assert at_three[:2].tolist() == [0.0, 1.0] and math.isnan(at_three[2])
    assert metrics.pointing_game(saliency, regions, tolerance=4)[:2].tolist() == [1.0, 1.0]
    assert metrics.pointing_game(saliency, regions, tolerance=3, reduction="mean").item() == 0.5


def test_pointing_game_uses_the_first_maximum_in_row_major_order():
    saliency = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    regions = torch.tensor([[[False, False], [True, False]]])
    assert metrics.pointing_game(saliency, regions, tolerance=1).tolist() == [0.0]


def test_energy_pointing_game_is_the_share_of_mass_inside():
    saliency = torch.tensor([[[1.0, 1.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    regions = torch.tensor([[[True, False], [False, False]], [[True, True], [True, True]]])
    energy = metrics.energy_pointing_game(saliency, regions)
    assert energy[0].item() == 0.25 and math.isnan(energy[1])
    assert metrics.energy_pointing_game(saliency, regions, reduction="mean").item() == 0.25


def test_energy_pointing_game_rejects_negative_saliency():
    with pytest.raises(ValueError, match="non-negative"):
        metrics.energy_pointing_game(-torch.ones(1, 2, 2), torch.ones(1, 2, 2, dtype=torch.bool))


def corner_difference(images: Tensor) -> Tensor:
    """Score ``1 + x[0, 0] - x[1, 1]``."""
    return 1 + images[:, :1, 0, 0] - images[:, :1, 1, 1]


def test_average_drop_and_increase_in_confidence_match_hand_computation():
    images = torch.cat([IMAGE, IMAGE])  # Y = 1 + 0.4 - 0.1 = 1.3 for both
    saliency = torch.tensor([[[1.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]])
    # O = 1 + 0.4 - 0 = 1.4 (an increase) and O = 1 + 0 - 0.1 = 0.9 (a drop of 0.4 / 1.3).
    drop = metrics.average_drop(
        corner_difference, images, saliency, torch.tensor([0, 0]), softmax=False
    )
    torch.testing.assert_close(drop, torch.tensor([0.0, 0.4 / 1.3]))
    increase = metrics.increase_in_confidence(
        corner_difference, images, saliency, torch.tensor([0, 0]), softmax=False
    )
    assert increase.tolist() == [1.0, 0.0]
    mean_drop = metrics.average_drop(
        corner_difference, images, saliency, torch.tensor([0, 0]), softmax=False, reduction="mean"
    )
    torch.testing.assert_close(mean_drop, torch.tensor(0.2 / 1.3))


def test_average_drop_needs_positive_scores():
    with pytest.raises(ValueError, match="positive"):
        metrics.average_drop(lambda x: -pixel_sum(x), IMAGE, SALIENCY, FIRST_CLASS, softmax=False)


def test_metrics_accept_callable_targets():
    area = metrics.deletion_auc(
        pixel_sum, IMAGE, SALIENCY, lambda out: out[:, 0], pixels_per_step=1
    )
    torch.testing.assert_close(area, torch.tensor([0.375]))


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="saliency must have shape"):
        metrics.deletion_auc(pixel_sum, IMAGE, torch.zeros(1, 3, 3), FIRST_CLASS)
    with pytest.raises(ValueError, match="reduction"):
        metrics.energy_pointing_game(SALIENCY, SALIENCY > 0, reduction="sum")
    with pytest.raises(ValueError, match="substrate"):
        metrics.deletion_auc(pixel_sum, IMAGE, SALIENCY, FIRST_CLASS, substrate="noise")
