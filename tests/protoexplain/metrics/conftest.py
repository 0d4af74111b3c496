"""Fixtures for the metrics tests."""

from __future__ import annotations

import pytest
from toy_parts import ToyParts, tiny_model

from prototypes import ProtoPNet


@pytest.fixture
def toy_parts() -> ToyParts:
    return ToyParts()


@pytest.fixture
def model() -> ProtoPNet:
    return tiny_model()
