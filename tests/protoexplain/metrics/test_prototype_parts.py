"""Method-independent part of each prototype: occlusion and latent-peak definitions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from protoexplain.metrics.pairs import EvaluationPairs
from protoexplain.metrics.prototype_parts import (
    assign_prototype_parts,
    find_prototype_parts,
    latent_peak_scores,
    occlusion_scores,
    responsible_parts,
    score_pair_parts,
)
from prototypes import ReceptiveField


class RedPrototype(nn.Module):
    """One prototype whose similarity map is the red channel average-pooled to 2x2 cells of
    8x8 pixels: it responds to red wherever it is."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(3))
        self.register_buffer("prototype_class_identity", torch.ones(1, 1))
        self.receptive_field = ReceptiveField(jump=8.0, size=8.0, start=4.0)

    def forward(self, images: torch.Tensor):
        maps = nn.functional.avg_pool2d(images[:, :1], 8)
        return SimpleNamespace(similarity_maps=maps, similarities=maps.flatten(2).amax(dim=2))


def _two_part_pairs() -> EvaluationPairs:
    """Two 16 px images: part 0 is the top-left quarter, part 1 the bottom-right quarter;
    only part 1 is red (in image 1 part 0 is absent)."""
    images = torch.zeros(2, 3, 16, 16)
    images[:, 0, 8:, 8:] = 1.0
    images[:, 1, :8, :8] = 1.0
    parts = torch.zeros(2, 2, 16, 16, dtype=torch.bool)
    parts[0, 0, :8, :8] = True
    parts[:, 1, 8:, 8:] = True
    return EvaluationPairs(images=images, indices=torch.arange(2),
                           ground_truth={"part_masks": parts}, part_names=("a", "b"),
                           rows=torch.tensor([0, 1]), prototypes=torch.tensor([0, 0]))


def test_occlusion_score_is_the_relative_similarity_drop_when_a_part_is_filled():
    images = torch.ones(1, 1, 2, 2)
    parts = torch.tensor([[[[1, 0], [0, 0]], [[0, 1], [1, 1]]]], dtype=torch.bool)

    def score(batch: torch.Tensor) -> torch.Tensor:
        return batch.flatten(1).sum(dim=1)

    drops = occlusion_scores(score, images, parts, torch.zeros(1), torch.tensor([4.0]))
    assert torch.allclose(drops, torch.tensor([[0.25, 0.75]]))


def test_latent_peak_score_marks_the_part_under_the_peak_centre():
    parts = torch.zeros(2, 3, 8, 8, dtype=torch.bool)
    parts[:, 1, :4, :] = True
    parts[:, 2, 4:, :] = True
    centres = torch.tensor([[2.5, 7.9], [4.0, 0.0]])  # pixel (2, 7) and pixel (4, 0)
    assert latent_peak_scores(centres, parts).tolist() == [[0, 1, 0], [0, 0, 1]]


def test_prototype_part_has_the_highest_mean_score_over_pairs_showing_it():
    scores = torch.tensor([[0.25, 0.5], [0.75, float("nan")], [0.2, 0.1], [0.0, 0.0]])
    visible = torch.tensor([[True, True], [True, False], [True, True], [False, False]])
    groups = torch.tensor([0, 0, 1, 2])
    # Prototype 0: part 0 mean 0.5, part 1 mean 0.5 (one pair) -> first on ties: 0.
    # Prototype 1: part 0. Prototype 2: nothing visible -> -1. Prototype 3: no pairs -> -1.
    assert assign_prototype_parts(scores, visible, groups, 4).tolist() == [0, 0, -1, -1]


def test_responsible_part_is_the_best_visible_part_with_a_positive_score():
    scores = torch.tensor([[0.1, 0.3, 0.3], [0.9, 0.2, 0.0], [0.0, -0.1, 0.0], [0.5, 0.5, 0.4]])
    visible = torch.tensor([[True, True, True], [False, True, True], [True, True, True],
                            [False, False, False]])
    # Pair 0: tie between parts 1 and 2 -> first; pair 1: part 0 is not visible -> part 1;
    # pair 2: no removal lowers the similarity -> none; pair 3: no part visible -> none.
    assert responsible_parts(scores, visible).tolist() == [1, 1, -1, -1]


def test_pair_part_scores_keep_pair_order_and_name_each_pairs_responsible_part():
    scores, visible = score_pair_parts(RedPrototype(), _two_part_pairs(), progress=False)
    assert visible.tolist() == [[True, True], [False, True]]
    # Filling the red quarter removes the prototype's whole response; the green one nothing.
    assert torch.allclose(scores[:, 1], torch.ones(2))
    assert scores[0, 0] == pytest.approx(0.0)
    assert responsible_parts(scores, visible).tolist() == [1, 1]


def test_occlusion_finds_the_part_the_prototype_responds_to():
    parts = find_prototype_parts(RedPrototype(), _two_part_pairs(), definition="occlusion",
                                 progress=False)
    assert parts.tolist() == [1]


def test_latent_peak_finds_the_part_under_the_best_latent_position():
    parts = find_prototype_parts(RedPrototype(), _two_part_pairs(), definition="latent_peak",
                                 progress=False)
    assert parts.tolist() == [1]


def test_find_prototype_parts_rejects_unknown_definitions_and_missing_part_masks():
    pairs = _two_part_pairs()
    with pytest.raises(ValueError, match="part definition"):
        find_prototype_parts(RedPrototype(), pairs, definition="nearest", progress=False)
    bare = EvaluationPairs(images=pairs.images, indices=pairs.indices, ground_truth={},
                           part_names=(), rows=pairs.rows, prototypes=pairs.prototypes)
    with pytest.raises(ValueError, match="part masks"):
        find_prototype_parts(RedPrototype(), bare, progress=False)
