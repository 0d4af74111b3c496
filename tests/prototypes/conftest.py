"""Fixtures for the prototypes tests."""

from __future__ import annotations

import pytest
import torch

from prototypes import ProtoPNet
from tests.prototypes.tiny_protopnet import make_batches, make_model


@pytest.fixture
def tiny_model() -> ProtoPNet:
    return make_model()


@pytest.fixture
def toy_batches() -> list[dict[str, torch.Tensor]]:
    """11 random 16 px images of 3 classes in batches of 4."""
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(11, 3, 16, 16, generator=generator)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1])
    return make_batches(images, labels, batch_size=4, first_index=100)
