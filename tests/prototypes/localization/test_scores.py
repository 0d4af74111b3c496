"""The score of an (image, prototype) pair: the similarity at the peak or the pooled one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from prototypes.localization.scores import PairScores


class MapsFromImages(nn.Module):
    """Two prototypes whose similarity maps are the first two channels of the image."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.1, 0.2, 0.3]))

    def forward(self, images: torch.Tensor) -> SimpleNamespace:
        maps = images[:, :2]
        return SimpleNamespace(similarity_maps=maps, similarities=maps.flatten(2).amax(dim=2))


def _images() -> torch.Tensor:
    images = torch.zeros(2, 3, 2, 2)
    images[0, 1] = torch.tensor([[1.0, 5.0], [2.0, 3.0]])  # prototype 1 peaks at flat 1
    images[1, 0] = torch.tensor([[0.0, 0.0], [4.0, 1.0]])  # prototype 0 peaks at flat 2
    return images


def test_peak_scores_read_the_similarity_where_it_peaked_on_the_unperturbed_image():
    model = MapsFromImages()
    images = _images()
    scores = PairScores(model, images, torch.tensor([1, 0]), "peak")
    assert scores.peaks.tolist() == [1, 2]
    assert scores.reference.tolist() == [5.0, 4.0]
    moved = images.clone()
    moved[0, 1] = torch.tensor([[9.0, 1.0], [0.0, 0.0]])  # the maximum moved away
    assert scores.of_images(moved).tolist() == [1.0, 4.0]
    both = torch.cat([images, moved])  # two copies of the batch, copy-major
    assert scores.of_images(both).tolist() == [5.0, 4.0, 1.0, 4.0]
    assert scores.relative(model(both)).tolist() == pytest.approx([1.0, 1.0, 0.2, 1.0])


def test_pooled_scores_follow_the_maximum_wherever_it_is():
    images = _images()
    scores = PairScores(MapsFromImages(), images, torch.tensor([1, 0]), "pooled")
    moved = images.clone()
    moved[0, 1] = torch.tensor([[9.0, 1.0], [0.0, 0.0]])
    assert scores.of_images(moved).tolist() == [9.0, 4.0]


def test_an_unknown_score_is_refused():
    with pytest.raises(ValueError, match=r"score must be one of \('pooled', 'peak'\), got 'max'"):
        PairScores(MapsFromImages(), _images(), torch.tensor([1, 0]), "max")
