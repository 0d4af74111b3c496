"""Counting what a localization method costs: image forward and backward passes, seconds.

Method-agnostic: a hook on the model's ``forward`` counts every image a call processes
(a call on ``R`` stacked copies of a batch of ``B`` images counts ``R * B``), and a backward
pass is counted, once per image of that call, whenever a gradient reaches any tensor of the
call's output (``torch.autograd.graph.register_multi_grad_hook`` in ``"any"`` mode: once per
``backward()`` / ``autograd.grad()``, however many outputs the loss uses). A backward that
stops inside the model (Grad-CAM on a late layer) counts as a backward pass too. Work done by
calling the model's submodules directly (not through ``model(images)``) is not counted.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class PassCount:
    """Images passed forward through and gradients propagated back from the model's calls,
    and wall-clock seconds, accumulated over the ``counting_passes`` blocks it was used in."""

    forward_images: int = 0
    backward_images: int = 0
    seconds: float = 0.0


def output_tensors(output: Any) -> list[Tensor]:
    """The tensors of a model output: a tensor, or those in a mapping, sequence or
    dataclass (recursively)."""
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, Mapping):
        values = list(output.values())
    elif isinstance(output, (list, tuple)):
        values = list(output)
    elif dataclasses.is_dataclass(output) and not isinstance(output, type):
        values = [getattr(output, f.name) for f in dataclasses.fields(output)]
    else:
        return []
    return [t for value in values for t in output_tensors(value)]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def counting_passes(model: nn.Module, count: PassCount) -> Iterator[PassCount]:
    """Within the block, add to ``count`` every image passed forward and backward through
    ``model`` and the elapsed seconds (CUDA work is waited for, so the time is the method's,
    not just its launch). Hooks are removed on exit."""
    device = next(model.parameters()).device

    def on_forward(_module: nn.Module, _inputs: tuple, output: Any) -> None:
        tensors = output_tensors(output)
        if not tensors:
            return
        rows = int(tensors[0].shape[0])
        count.forward_images += rows
        tracked = [t for t in tensors if t.requires_grad]
        if tracked:

            def on_backward(_gradient: Tensor) -> None:
                count.backward_images += rows

            torch.autograd.graph.register_multi_grad_hook(tracked, on_backward, mode="any")

    handle = model.register_forward_hook(on_forward)
    _synchronize(device)
    start = time.perf_counter()
    try:
        yield count
    finally:
        _synchronize(device)
        count.seconds += time.perf_counter() - start
        handle.remove()
