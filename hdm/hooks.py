"""Context managers around the explained model: evaluation mode, frozen weights, hooks.

Every hook registered here is removed when its ``with`` block ends, also on error, and
each module's own training flag and the parameters' ``requires_grad`` are restored
afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ActivationRecorder", "evaluation_mode", "explaining", "record_activations",
           "record_spatial_outputs", "switched_to_eval"]


@contextmanager
def switched_to_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block; afterwards every submodule gets back its own train/eval flag,
    so a module kept in eval inside a model in training mode (e.g. a frozen batch norm)
    stays in eval, which ``model.train(was_training)`` would undo."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (:func:`switched_to_eval`) and no grad for the block."""
    with switched_to_eval(model), torch.no_grad():
        yield model


@contextmanager
def explaining(model: Callable[..., Any]) -> Iterator[None]:
    """Run ``model`` in eval mode with its parameters frozen; restore both afterwards.

    Explanations never update weights: gradients are taken with respect to masks or
    activations only. Each submodule gets back its own train/eval flag
    (:func:`switched_to_eval`). Callables that are not ``nn.Module`` are left as they are.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    parameters = list(model.parameters())
    flags = [p.requires_grad for p in parameters]
    with switched_to_eval(model):
        for p in parameters:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(parameters, flags, strict=True):
                p.requires_grad_(flag)


class ActivationRecorder:
    """Outputs of chosen modules during the last forward pass (the last call of each)."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self.modules = list(modules)
        self.outputs: dict[int, Tensor] = {}

    def __getitem__(self, index: int) -> Tensor:
        if index not in self.outputs:
            raise RuntimeError(
                f"layer {self.modules[index].__class__.__name__} #{index} produced no tensor output"
            )
        return self.outputs[index]


@contextmanager
def record_activations(modules: Sequence[nn.Module]) -> Iterator[ActivationRecorder]:
    """Record the tensor output of each module in ``modules`` while the block runs."""
    recorder = ActivationRecorder(modules)

    def make_hook(index: int) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, Tensor):
                recorder.outputs[index] = output

        return hook

    handles = [m.register_forward_hook(make_hook(i)) for i, m in enumerate(recorder.modules)]
    try:
        yield recorder
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def record_spatial_outputs(
    model: nn.Module,
) -> Iterator[list[tuple[str, nn.Module, tuple[int, int]]]]:
    """Record, in the order they finish, every submodule whose output is a 4-D tensor.

    Yields a list filled during the block with ``(name, module, (h, w))`` entries, one per
    call; containers finish after their children, so the last entry of a resolution is the
    outermost block that produced it.
    """
    calls: list[tuple[str, nn.Module, tuple[int, int]]] = []

    def make_hook(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, Tensor) and output.dim() == 4:
                calls.append((name, module, (int(output.shape[2]), int(output.shape[3]))))

        return hook

    handles = [
        m.register_forward_hook(make_hook(n)) for n, m in model.named_modules() if m is not model
    ]
    try:
        with torch.no_grad():
            yield calls
    finally:
        for handle in handles:
            handle.remove()
