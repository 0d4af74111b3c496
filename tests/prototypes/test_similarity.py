"""Distances and similarities on tensors small enough to compute by hand."""

import math

import torch

from prototypes.similarity import (
    distance_to_similarity,
    linear_similarity,
    log_similarity,
    squared_l2_distances,
)


def test_squared_l2_distances_match_hand_computed_values():
    # Two latent positions z0 = (1, 2), z1 = (0, -1); prototypes p0 = (1, 0), p1 = (2, 2).
    latent = torch.tensor([[[[1.0, 0.0]], [[2.0, -1.0]]]])  # (1, D=2, h=1, w=2)
    prototypes = torch.tensor([[1.0, 0.0], [2.0, 2.0]]).view(2, 2, 1, 1)
    distances = squared_l2_distances(latent, prototypes)
    # |z0-p0|^2 = 0+4, |z1-p0|^2 = 1+1, |z0-p1|^2 = 1+0, |z1-p1|^2 = 4+9
    expected = torch.tensor([[[[4.0, 2.0]], [[1.0, 13.0]]]])
    assert distances.shape == (1, 2, 1, 2)
    torch.testing.assert_close(distances, expected)


def test_squared_l2_distances_equal_brute_force_and_are_never_negative():
    latent = torch.randn(3, 5, 4, 6)
    prototypes = torch.randn(7, 5, 1, 1)
    prototypes[0, :, 0, 0] = latent[1, :, 2, 3]  # an exact match: distance 0, not -epsilon
    brute = ((latent[:, None] - prototypes[None, :, :, :, :]) ** 2).sum(dim=2)
    distances = squared_l2_distances(latent, prototypes)
    torch.testing.assert_close(distances, brute, atol=1e-5, rtol=1e-5)
    assert (distances >= 0).all()
    assert distances[1, 0, 2, 3] < 1e-5


def test_log_similarity_matches_hand_computed_values():
    distances = torch.tensor([0.0, 1.0, 3.0])
    expected = torch.tensor([math.log(1 / 1e-4), math.log(2 / 1.0001), math.log(4 / 3.0001)])
    torch.testing.assert_close(log_similarity(distances), expected)
    torch.testing.assert_close(distance_to_similarity(distances, "log"), expected)


def test_linear_similarity_is_negative_distance():
    distances = torch.tensor([0.0, 2.5])
    torch.testing.assert_close(linear_similarity(distances), torch.tensor([0.0, -2.5]))
    torch.testing.assert_close(distance_to_similarity(distances, "linear"), -distances)


def test_model_scores_are_max_pooled_similarity_maps(tiny_model):
    out = tiny_model(torch.rand(2, 3, 16, 16))
    torch.testing.assert_close(out.min_distances, out.distance_maps.amin(dim=(2, 3)))
    torch.testing.assert_close(out.similarities, out.similarity_maps.amax(dim=(2, 3)))
    torch.testing.assert_close(out.similarity_maps, log_similarity(out.distance_maps))
    torch.testing.assert_close(out.logits, out.similarities @ tiny_model.last_layer.weight.t())
