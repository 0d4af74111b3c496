"""Fast configurations of every explainer for 32 x 32 test images (fewer steps and samples).

NeuroMask uses its official CIFAR-10 settings (temperature 1, weights (0.4, 0.35, 0.15),
3x3 Laplacian) with a larger learning rate and a narrower initial range so that 300
steps suffice instead of 2000.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

import hdm

FAST: dict[str, Callable[..., hdm.Explainer]] = {
    "mdm": lambda model, **kw: hdm.MDM(model, steps=40, **kw),
    "hdm": lambda model, **kw: hdm.HDM(model, benchmark_steps=20, auxiliary_steps=20, **kw),
    "neuromask": lambda model, **kw: hdm.NeuroMask(
        model,
        steps=300,
        lr=0.1,
        weight_limit=5.0,
        temperature=1.0,
        weights=(0.4, 0.35, 0.15),
        laplacian_size=3,
        **kw,
    ),
    "gradcam": lambda model, **kw: hdm.GradCAM(model, **kw),
    "sise": lambda model, **kw: hdm.SISE(model, **kw),
    "rise": lambda model, **kw: hdm.RISE(model, num_masks=1000, **kw),
}
"""Method name -> factory ``(model, **overrides) -> explainer``."""

QUICK: dict[str, Callable[..., hdm.Explainer]] = {
    "mdm": lambda model, **kw: hdm.MDM(model, steps=10, **kw),
    "hdm": lambda model, **kw: hdm.HDM(model, benchmark_steps=5, auxiliary_steps=5, **kw),
    "neuromask": lambda model, **kw: hdm.NeuroMask(model, steps=20, **kw),
    "gradcam": lambda model, **kw: hdm.GradCAM(model, **kw),
    "sise": lambda model, **kw: hdm.SISE(model, **kw),
    "rise": lambda model, **kw: hdm.RISE(model, num_masks=64, **kw),
}
"""Few-step configurations for tests of call mechanics (shapes, batching, dtypes)."""


def build(
    table: dict[str, Callable[..., hdm.Explainer]], name: str, model: nn.Module, **kw: object
) -> hdm.Explainer:
    """The explainer ``name`` from ``table`` for ``model``."""
    return table[name](model, **kw)
