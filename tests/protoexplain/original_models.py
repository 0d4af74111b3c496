"""Checkpoints in the original ProtoPNet's format, made with the stand-ins in
``original_protopnet/`` (same module, class and attribute names as cfchen-duke/ProtoPNet)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

STANDINS = Path(__file__).parent / "original_protopnet"
MODULES = ("model", "vgg_features", "resnet_features", "densenet_features")
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

TRUNKS = {
    # name: (module, factory arguments, image size, prototype dim, add-on type)
    "vgg": ("vgg_features", ("VGG_features", [4, "M", 8, "M"], False), 32, 4, "regular"),
    "vgg_bn": ("vgg_features", ("VGG_features", [4, 4, "M", 8, "M", 8, "M"], True), 32, 4,
               "bottleneck"),
    "resnet": ("resnet_features", ("ResNet_features", "BasicBlock", [1, 1, 1, 1]), 64, 16,
               "bottleneck"),
    "densenet": ("densenet_features", ("DenseNet_features", 4, (1, 2, 1), 8, 2), 32, 4,
                 "bottleneck"),
}


@contextlib.contextmanager
def original_code() -> Iterator[dict]:
    """The stand-in modules importable under the original's names; removed afterwards, so
    that nothing of them is left when a saved checkpoint is read back."""
    taken = [name for name in MODULES if name in sys.modules]
    assert not taken, f"modules {taken} already imported"
    sys.path.insert(0, str(STANDINS))
    try:
        yield {name: __import__(name) for name in MODULES}
    finally:
        sys.path.remove(str(STANDINS))
        for name in MODULES:
            sys.modules.pop(name, None)


def _randomise(model: nn.Module, seed: int) -> None:
    """Random weights everywhere, batch-norm statistics included, so that a wrong mapping
    cannot go unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator)
                                          * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator)
                                         + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator)
                                    * (2 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)


def build_original(modules: dict, trunk: str, activation: str = "log", num_classes: int = 3,
                   prototypes_per_class: int = 2, seed: int = 0) -> nn.Module:
    """A stand-in ``model.PPNet`` in eval mode with random weights."""
    module_name, (class_name, *arguments), size, dim, add_on = TRUNKS[trunk]
    trunk_module = modules[module_name]
    if class_name == "ResNet_features":
        arguments = [getattr(trunk_module, arguments[0]), arguments[1]]
    features = getattr(trunk_module, class_name)(*arguments)
    ppnet = modules["model"].construct_PPNet(
        features, size, (num_classes * prototypes_per_class, dim, 1, 1), num_classes,
        prototype_activation_function=activation, add_on_layers_type=add_on)
    _randomise(ppnet, seed)
    with torch.no_grad():
        ppnet.prototype_vectors.copy_(torch.rand(ppnet.prototype_vectors.shape,
                                                 generator=torch.Generator().manual_seed(seed)))
    return ppnet.eval()


def original_outputs(ppnet: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The original's logits, min distances, distance and similarity maps; it normalises
    outside the model."""
    normalised = (images - MEAN) / STD
    with torch.no_grad():
        logits, min_distances = ppnet(normalised)
        distances = ppnet.prototype_distances(normalised)
    return {"logits": logits, "min_distances": min_distances, "distance_maps": distances,
            "similarity_maps": ppnet.distance_2_similarity(distances)}


def image_size(trunk: str) -> int:
    return TRUNKS[trunk][2]
