"""Counting what a localization method costs: image forward and backward passes, seconds.

Method-agnostic: hooks on the model's trunk (``model.features`` when it has one, else the
model itself) count every image that goes through it, whichever way a method calls the
model (whole forward, ``model.latent``, its own hooks). A backward pass is counted when a
gradient reaches the trunk's output; every explanation of a prototype network goes through
that tensor, and PyTorch calls a tensor hook once per backward pass, with the gradients of
all uses already summed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class PassCount:
    """Images forwarded through and gradients propagated back from the counted module, and
    wall-clock seconds, accumulated over the ``counting_passes`` blocks it was used in."""

    forward_images: int = 0
    backward_images: int = 0
    seconds: float = 0.0


def counted_module(model: nn.Module) -> nn.Module:
    """The module whose calls are counted: the trunk ``model.features`` when present."""
    features = getattr(model, "features", None)
    return features if isinstance(features, nn.Module) else model


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def counting_passes(model: nn.Module, count: PassCount) -> Iterator[PassCount]:
    """Within the block, add to ``count`` every image passed forward and backward through
    :func:`counted_module` of ``model`` and the elapsed seconds (CUDA work is waited for,
    so the time is the method's, not just its launch). Hooks are removed on exit."""
    device = next(model.parameters()).device

    def on_backward(gradient: Tensor) -> None:
        count.backward_images += int(gradient.shape[0])

    def on_forward(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
        count.forward_images += int(output.shape[0])
        if output.requires_grad:
            output.register_hook(on_backward)

    handle = counted_module(model).register_forward_hook(on_forward)
    _synchronize(device)
    start = time.perf_counter()
    try:
        yield count
    finally:
        _synchronize(device)
        count.seconds += time.perf_counter() - start
        handle.remove()
