"""Tiny XProtoNets and multi-label batches shared by the XProtoNet tests."""

from __future__ import annotations

import torch

from prototypes import XProtoNet


def make_xprotonet(num_classes: int = 3, prototypes_per_class: int = 2, prototype_dim: int = 4,
                   image_size: int = 16, width: int = 2, **options) -> XProtoNet:
    """A small_cnn XProtoNet small enough for exhaustive checks (16 px -> 2x2 latent)."""
    return XProtoNet("small_cnn", num_classes, prototypes_per_class=prototypes_per_class,
                     prototype_dim=prototype_dim, image_size=image_size,
                     backbone_options={"width": width}, **options)


def multi_label_batches(batch_size: int = 4, first_index: int = 100
                        ) -> list[dict[str, torch.Tensor]]:
    """10 random 16 px images with multi-hot labels over 3 classes (every class positive
    somewhere, one image with no label) in batches of ``batch_size``."""
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(10, 3, 16, 16, generator=generator)
    labels = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0], [0, 0, 1],
                           [1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 1], [1, 0, 0]],
                          dtype=torch.float32)
    indices = torch.arange(10) + first_index
    return [{"image": images[i:i + batch_size], "label": labels[i:i + batch_size],
             "index": indices[i:i + batch_size]} for i in range(0, 10, batch_size)]
