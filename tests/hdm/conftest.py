"""Fixtures for the hdm tests: a batch of images and the tiny models of ``hdm_models``."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from tests.hdm.hdm_models import IMAGE_SIZE, RegionModel, SmallCNN


@pytest.fixture
def images() -> Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)


@pytest.fixture
def region_model() -> RegionModel:
    torch.manual_seed(0)
    return RegionModel()


@pytest.fixture
def small_cnn() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN()
