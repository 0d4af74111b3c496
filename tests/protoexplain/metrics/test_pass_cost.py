"""Counting forward and backward passes through a model, method-agnostically."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from protoexplain.metrics.cost import PassCount, counting_passes, output_tensors


@dataclass
class Output:
    scores: torch.Tensor
    maps: torch.Tensor


class TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 2, 3)
        self.head = nn.Conv2d(2, 2, 1)

    def forward(self, images: torch.Tensor) -> Output:
        maps = self.head(self.features(images))
        return Output(scores=maps.mean(dim=(2, 3)), maps=maps)


def test_output_tensors_are_found_in_dataclasses_mappings_and_sequences():
    a, b, c = torch.zeros(1), torch.ones(2), torch.zeros(3)
    found = output_tensors({"x": Output(scores=a, maps=b), "y": [c, "not a tensor"]})
    assert [t.shape[0] for t in found] == [1, 2, 3]


def test_counts_images_forward_and_one_backward_pass_however_many_outputs_the_loss_uses():
    model = TwoOutputs()
    count = PassCount()
    started = time.perf_counter()
    with counting_passes(model, count):
        inside = time.perf_counter()
        with torch.no_grad():
            model(torch.rand(4, 3, 8, 8))  # 4 forward, no backward
        output = model(torch.rand(3, 3, 8, 8, requires_grad=True))
        (output.scores.sum() + output.maps.pow(2).sum()).backward()  # one backward pass
        work = time.perf_counter() - inside
    elapsed = time.perf_counter() - started
    assert (count.forward_images, count.backward_images) == (7, 3)
    assert work <= count.seconds <= elapsed  # the block's wall time, hooks included
    model(torch.rand(5, 3, 8, 8)).scores.sum().backward()  # outside the block: hooks gone
    assert (count.forward_images, count.backward_images) == (7, 3)


def test_backward_that_stops_inside_the_model_counts_like_grad_cam():
    model = TwoOutputs()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    recorded = {}
    model.features.register_forward_hook(
        lambda module, inputs, out: recorded.update(a=out.requires_grad_()))
    count = PassCount()
    with counting_passes(model, count):
        output = model(torch.rand(2, 3, 8, 8))
        torch.autograd.grad(output.scores.sum(), recorded["a"])
    assert (count.forward_images, count.backward_images) == (2, 2)


def test_every_backward_pass_through_a_retained_graph_counts():
    model = TwoOutputs()
    count = PassCount()
    with counting_passes(model, count):
        loss = model(torch.rand(2, 3, 8, 8)).scores.sum()
        loss.backward(retain_graph=True)
        loss.backward()
    assert (count.forward_images, count.backward_images) == (2, 4)
