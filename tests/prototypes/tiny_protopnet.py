"""Tiny models and in-memory batches shared by the prototypes tests."""

from __future__ import annotations

import torch

from prototypes import ProtoPNet


def make_model(num_classes: int = 3, prototypes_per_class: int = 2, prototype_dim: int = 4,
               image_size: int = 16, width: int = 2, **options) -> ProtoPNet:
    """A small_cnn ProtoPNet small enough for exhaustive checks (16 px -> 2x2 latent)."""
    return ProtoPNet("small_cnn", num_classes, prototypes_per_class=prototypes_per_class,
                     prototype_dim=prototype_dim, image_size=image_size,
                     backbone_options={"width": width}, **options)


def make_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 first_index: int = 0) -> list[dict[str, torch.Tensor]]:
    """Dict batches as the project's loaders yield them, with ``index`` = position +
    ``first_index``."""
    indices = torch.arange(len(images)) + first_index
    return [{"image": images[i:i + batch_size], "label": labels[i:i + batch_size],
             "index": indices[i:i + batch_size]} for i in range(0, len(images), batch_size)]
