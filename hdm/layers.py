"""Choosing the internal layers that Grad-CAM and SISE read.

Layers may be given as modules or as dotted names (``"layer4"``, ``"features.29"``).
When they are not given they are found by running one forward pass with hooks, so the
choice works for any ``nn.Module`` whose feature maps are 4-D tensors ``(B, C, h, w)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from hdm.hooks import record_spatial_outputs

Layer = str | nn.Module


def resolve_layers(
    model: Callable[..., Any], layers: Sequence[Layer], argument: str = "layers"
) -> list[nn.Module]:
    """Modules for ``layers`` (modules or dotted names of ``model``'s submodules)."""
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    if len(layers) == 0:
        raise ValueError(f"`{argument}` must name at least one layer")
    modules = []
    for layer in layers:
        if isinstance(layer, nn.Module):
            modules.append(layer)
        elif isinstance(layer, str):
            if not isinstance(model, nn.Module):
                raise TypeError(
                    f"`{argument}` given by name ({layer!r}) needs the model to be an nn.Module"
                )
            try:
                modules.append(model.get_submodule(layer))
            except AttributeError as error:
                raise ValueError(
                    f"`{argument}`: the model has no submodule named {layer!r}"
                ) from error
        else:
            raise TypeError(
                f"`{argument}` entries must be nn.Module or str, got {type(layer).__name__}"
            )
    return modules


def _spatial_calls(
    model: Callable[..., Any], images: Tensor, argument: str
) -> list[tuple[str, nn.Module, tuple[int, int]]]:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"choosing `{argument}` automatically needs an nn.Module; pass `{argument}=` explicitly"
        )
    with record_spatial_outputs(model) as calls:
        model(images[:1])
    calls = [c for c in calls if c[2] != (1, 1)]
    if not calls:
        raise ValueError(
            "the model has no submodule with a spatial (B, C, h, w) output; "
            f"pass `{argument}=` explicitly"
        )
    return calls


def last_convolution(model: Callable[..., Any], images: Tensor) -> nn.Module:
    """The last ``nn.Conv2d`` to run whose output is larger than 1x1 (Grad-CAM's usual layer)."""
    convolutions = [
        m for _, m, _ in _spatial_calls(model, images, "layers") if isinstance(m, nn.Conv2d)
    ]
    if not convolutions:
        raise ValueError(
            "the model has no nn.Conv2d with a spatial output; pass `layers=` explicitly"
        )
    return convolutions[-1]


def block_ends(model: Callable[..., Any], images: Tensor) -> list[nn.Module]:
    """The last module of each resolution block, shallow to deep (SISE's layer selection).

    Modules are taken in the order their forward calls finish; consecutive calls with the
    same output size form a block, and the last of them (for nested modules, the
    outermost) ends it. SISE (Sattarzadeh et al., AAAI 2021, Sec. "Feature extraction")
    reads the last layer of every convolutional block, i.e. the layer before each
    down-sampling.
    """
    ends: list[nn.Module] = []
    calls = _spatial_calls(model, images, "layers")
    for i, (_, module, size) in enumerate(calls):
        if i + 1 == len(calls) or calls[i + 1][2] != size:
            if module not in ends:
                ends.append(module)
    return ends
