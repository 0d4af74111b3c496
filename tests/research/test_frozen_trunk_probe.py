"""The linear probe: pooled features of a trunk's latent map, and the probe's accuracy."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "research"), str(ROOT / "benchmarks")]
import frozen_trunk_probe  # noqa: E402


def test_pooled_features_normalise_then_average_and_max_over_positions():
    images = torch.rand(5, 3, 4, 4)
    loader = [{"image": images[:3], "label": torch.tensor([0, 1, 0])},
              {"image": images[3:], "label": torch.tensor([1, 1])}]
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.5])
    features, labels = frozen_trunk_probe.pooled_features(nn.Identity(), loader, mean, std,
                                                          progress=False)
    normalised = (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    assert torch.allclose(features["average"], normalised.mean(dim=(2, 3)))
    assert torch.allclose(features["max"], normalised.amax(dim=(2, 3)))
    assert labels.tolist() == [0, 1, 0, 1, 1]


def test_probe_separates_features_that_hold_the_class_and_not_noise():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(80) % 4
    informative = torch.randn(80, 16, generator=generator) * 0.1
    informative[torch.arange(80), labels] += 3.0  # one feature per class
    train, test = slice(0, 40), slice(40, 80)
    _, separable = frozen_trunk_probe.probe_accuracy(informative[train], labels[train],
                                                     informative[test], labels[test])
    assert separable == 1.0
    noise = torch.randn(80, 16, generator=generator)
    _, chance = frozen_trunk_probe.probe_accuracy(noise[train], labels[train], noise[test],
                                                  labels[test])
    assert chance == pytest.approx(0.25, abs=0.2)
