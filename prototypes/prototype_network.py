"""What ProtoPNet and XProtoNet share: a trunk, class-assigned prototypes, a last layer and
the input normalisation stored with the model.

Subclasses call :meth:`PrototypeNetwork._build_trunk` first, create their own add-on layers,
prototype vectors and last layer, then :meth:`PrototypeNetwork._finish` (buffers, Kaiming
initialisation of the add-on convolutions, last-layer connections), in that order so the
random initialisation draws stay in the original's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prototypes.backbones import build_backbone
from prototypes.receptive_field import image_size_pair, trace_receptive_field


class PrototypeNetwork(nn.Module):
    """Base of the prototype models; see the module docstring."""

    add_on_layers: nn.Module
    last_layer: nn.Linear

    def _build_trunk(self, backbone: str, num_classes: int, prototypes_per_class: int,
                     prototype_dim: int, mean: Sequence[float], std: Sequence[float],
                     image_size: int | tuple[int, int], pretrained: str | Path | None,
                     backbone_options: Mapping[str, Any] | None) -> int:
        """Check the shared arguments, build the trunk and trace its receptive field.

        Returns the trunk's number of output channels.
        """
        if num_classes < 1 or prototypes_per_class < 1 or prototype_dim < 1:
            raise ValueError("num_classes, prototypes_per_class and prototype_dim must be >= 1, "
                             f"got {num_classes}, {prototypes_per_class}, {prototype_dim}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values (std > 0), got {mean} and {std}")
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.prototypes_per_class = prototypes_per_class
        self.num_prototypes = num_classes * prototypes_per_class
        self.prototype_dim = prototype_dim
        self.image_size = image_size_pair(image_size)
        self.features, trunk_channels = build_backbone(backbone, pretrained,
                                                       **dict(backbone_options or {}))
        self.receptive_field, self.latent_size = trace_receptive_field(self.features,
                                                                       self.image_size)
        return trunk_channels

    def _finish(self, mean: Sequence[float], std: Sequence[float],
                incorrect_class_connection: float) -> None:
        """Register the class identity and normalisation buffers, initialise the add-on
        convolutions (Kaiming normal, fan-out, zero bias, as the original) and the last layer
        (+1 to the prototype's class, ``incorrect_class_connection`` elsewhere)."""
        identity = torch.zeros(self.num_prototypes, self.num_classes)
        identity[torch.arange(self.num_prototypes),
                 torch.arange(self.num_prototypes) // self.prototypes_per_class] = 1
        self.register_buffer("prototype_class_identity", identity)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        for module in self.add_on_layers.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        self.set_last_layer_incorrect_connection(incorrect_class_connection)

    @property
    def prototype_classes(self) -> torch.Tensor:
        """(P,) class index of each prototype."""
        return self.prototype_class_identity.argmax(dim=1)

    def set_last_layer_incorrect_connection(self, incorrect_strength: float) -> None:
        """Last-layer weights: 1 from a prototype to its own class, ``incorrect_strength``
        to the others (the original's ``set_last_layer_incorrect_connection``)."""
        own = self.prototype_class_identity.t()
        with torch.no_grad():
            self.last_layer.weight.copy_(own + incorrect_strength * (1 - own))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``(images - mean) / std`` per channel; ``images`` (B, 3, H, W) in [0, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        return (images - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
