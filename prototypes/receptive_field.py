"""Receptive fields of latent positions, computed analytically from a trunk's layers.

The recursion is the one of the original ProtoPNet (cfchen-duke/ProtoPNet,
``receptive_field.py``, ``compute_layer_rf_info`` / ``compute_proto_layer_rf_info_v2``), with
pixel ``i`` spanning ``[i, i + 1)`` (so the input's first centre is 0.5). For a layer with
kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` (effective kernel
``k' = d (k - 1) + 1``), applied to an input whose positions are ``jump`` pixels apart, see
``size`` pixels and are centred at ``start + i * jump``:

    size'  = size + (k' - 1) * jump
    start' = start + ((k' - 1) / 2 - p) * jump
    jump'  = jump * s

The original lists each trunk's (kernel, stride, padding) by hand. Here the layers are found
by running the trunk once on a dummy image with hooks on every ``Conv2d``, ``MaxPool2d`` and
``AvgPool2d`` and keeping them in execution order. Only the *main path* counts: a layer whose
input tensor was already consumed by an earlier layer is a parallel branch (a ResNet shortcut)
and is skipped, which is also what the original does for ResNets. This is an approximation for
networks whose branches differ in receptive field (a residual sum really sees the union of both
branches; the main path is the larger). A trunk that changes spatial size with any other module
(adaptive pooling, upsampling) is rejected. A convolution that pads according to its input's
size (TensorFlow's "SAME", :class:`prototypes.efficientnet_lite.SamePaddingConv2d`) reports
its padding before the input through a ``leading_padding((H, W)) -> (top, left)`` method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hdm.hooks import evaluation_mode

__all__ = ["ReceptiveField", "image_size_pair", "receptive_field_box", "receptive_field_boxes",
           "trace_receptive_field"]

_SPATIAL_LAYERS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class ReceptiveField:
    """Geometry of one latent position's receptive field, in input pixels.

    ``jump``: distance between neighbouring latent positions; ``size``: side of the field;
    ``start``: centre of latent position 0 (pixel ``i`` spans ``[i, i + 1)``).
    """

    jump: float = 1.0
    size: float = 1.0
    start: float = 0.5

    def through(self, kernel: int, stride: int, padding: int, dilation: int = 1
                ) -> ReceptiveField:
        """The field after one more layer (the recursion in the module docstring)."""
        span = dilation * (kernel - 1)
        return ReceptiveField(jump=self.jump * stride,
                              size=self.size + span * self.jump,
                              start=self.start + (span / 2 - padding) * self.jump)


def _square(value, module: nn.Module, what: str) -> int:
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise ValueError(f"receptive field: {module} has a non-square {what} {value}; only "
                         "square kernels, strides, paddings and dilations are supported")
    return int(value[0])


def _layer_geometry(module: nn.Module, input_size: tuple[int, int]
                    ) -> tuple[int, int, int, int]:
    """(kernel, stride, left padding, dilation) of a Conv2d / MaxPool2d / AvgPool2d applied
    to an input of spatial ``input_size``."""
    kernel = _square(module.kernel_size, module, "kernel size")
    stride = _square(module.stride, module, "stride")
    dilation = _square(getattr(module, "dilation", 1), module, "dilation")
    padding = module.padding
    if hasattr(module, "leading_padding"):
        padding = module.leading_padding(input_size)
    elif padding == "valid":
        padding = 0
    elif padding == "same":
        padding = dilation * (kernel - 1) // 2
    return kernel, stride, _square(padding, module, "padding"), dilation


def trace_receptive_field(trunk: nn.Module, image_size: tuple[int, int]
                          ) -> tuple[ReceptiveField, tuple[int, int]]:
    """Receptive field of the trunk's output positions, and the output's spatial size.

    Runs ``trunk`` once (eval mode, restored afterwards) on a zero image of ``image_size``
    (H, W) on the trunk's device.
    """
    consumed: list[torch.Tensor] = []
    main_path: list[tuple[nn.Module, tuple[int, ...], tuple[int, ...]]] = []

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        source = inputs[0]
        if any(source is seen for seen in consumed):
            return  # a parallel branch on an already-consumed tensor (ResNet shortcut)
        consumed.append(source)
        main_path.append((module, tuple(source.shape[-2:]), tuple(output.shape[-2:])))

    handles = [m.register_forward_hook(record) for m in trunk.modules()
               if isinstance(m, _SPATIAL_LAYERS)]
    parameter = next(trunk.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        with evaluation_mode(trunk):
            output = trunk(torch.zeros(1, 3, *image_size, device=device))
    finally:
        for handle in handles:
            handle.remove()

    latent_size = tuple(output.shape[-2:])
    traced_size = main_path[-1][2] if main_path else tuple(image_size)
    if traced_size != latent_size:
        raise ValueError(
            f"receptive field: the trunk's output is {latent_size} but its last "
            f"Conv2d/MaxPool2d/AvgPool2d gives {traced_size}; the trunk changes spatial size "
            "with a layer this walk does not model")
    field = ReceptiveField()
    for module, input_size, _ in main_path:
        field = field.through(*_layer_geometry(module, input_size))
    return field, latent_size


def receptive_field_boxes(field: ReceptiveField, h_index: torch.Tensor, w_index: torch.Tensor,
                          image_size: tuple[int, int]) -> torch.Tensor:
    """Boxes (N, 4) ``y0, y1, x0, x1`` (end-exclusive, clipped to the image) of latent positions.

    As the original's ``compute_rf_protoL_at_spatial_location``: centre
    ``start + index * jump``, box ``[trunc(centre - size/2), trunc(centre + size/2))``.
    Computed in float64 on the indices' device; returns int64 on that device.
    """
    height, width = image_size
    half = field.size / 2

    def span(index: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        centre = field.start + index.to(torch.float64) * field.jump
        low = torch.trunc(centre - half).clamp(min=0)
        high = torch.trunc(centre + half).clamp(max=limit)
        return low.long(), high.long()

    y0, y1 = span(h_index, height)
    x0, x1 = span(w_index, width)
    return torch.stack([y0, y1, x0, x1], dim=-1)


def receptive_field_box(field: ReceptiveField, h_index: int, w_index: int,
                        image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box ``(y0, y1, x0, x1)`` of one latent position; see :func:`receptive_field_boxes`."""
    box = receptive_field_boxes(field, torch.tensor([h_index]), torch.tensor([w_index]),
                                image_size)
    y0, y1, x0, x1 = (int(v) for v in box[0])
    return y0, y1, x0, x1


def image_size_pair(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """``image_size`` as (H, W); an int means a square image."""
    if isinstance(image_size, int):
        pair = (image_size, image_size)
    else:
        pair = tuple(int(v) for v in image_size)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"image_size must be an int or (H, W) of positive ints, got {image_size}")
    return pair
