"""Counting forward and backward passes through a model's trunk, method-agnostically."""

from __future__ import annotations

import torch
from torch import nn

from protoexplain.metrics.cost import PassCount, counted_module, counting_passes


class WithTrunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 2, 3)
        self.head = nn.Linear(2, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).mean(dim=(2, 3)))


def test_counts_images_forward_and_backward_through_the_trunk():
    model = WithTrunk()
    count = PassCount()
    with counting_passes(model, count):
        with torch.no_grad():
            model(torch.rand(4, 3, 8, 8))  # 4 forward, no backward
        images = torch.rand(3, 3, 8, 8, requires_grad=True)
        output = model(images)
        (output.sum() + output.pow(2).sum()).backward()  # two uses, one backward pass
        model.features(torch.rand(2, 3, 8, 8))  # calling the trunk directly also counts
    assert count.forward_images == 9
    assert count.backward_images == 3
    assert count.seconds > 0
    model(torch.rand(5, 3, 8, 8)).sum().backward()  # outside the block: hooks are gone
    assert (count.forward_images, count.backward_images) == (9, 3)


def test_every_backward_pass_through_a_retained_graph_counts():
    model = WithTrunk()
    count = PassCount()
    with counting_passes(model, count):
        output = model(torch.rand(2, 3, 8, 8)).sum()
        output.backward(retain_graph=True)
        output.backward()
    assert (count.forward_images, count.backward_images) == (2, 4)


def test_a_model_without_trunk_is_counted_as_a_whole():
    model = nn.Linear(3, 1)
    assert counted_module(model) is model
    assert counted_module(WithTrunk()) is not None
    count = PassCount()
    with counting_passes(model, count):
        model(torch.rand(6, 3))
    assert count.forward_images == 6
