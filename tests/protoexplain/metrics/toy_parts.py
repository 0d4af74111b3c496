"""A tiny in-memory data set with exact ground truth and a tiny ProtoPNet for the metrics
tests."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from protoexplain.data.ground_truth import keypoints_from_masks
from prototypes import ProtoPNet

TOY_SIZE = 32


class ToyParts(Dataset):
    """32 px images of one object, 8 px wide and 16 px tall, at a position that depends on the
    index: its top half (part "top") is red, its bottom half (part "bottom") green, on a grey
    background. ``label`` is ``index % num_classes``. ``keys`` limits the ground truth."""

    part_names = ("top", "bottom")

    def __init__(self, num_samples: int = 8, num_classes: int = 2,
                 keys: tuple[str, ...] = ("object_mask", "part_masks", "part_keypoints")):
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.keys = keys

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict:
        y0, x0 = 6 + (5 * index) % 10, 6 + (7 * index) % 18
        parts = torch.zeros(2, TOY_SIZE, TOY_SIZE, dtype=torch.bool)
        parts[0, y0:y0 + 8, x0:x0 + 8] = True
        parts[1, y0 + 8:y0 + 16, x0:x0 + 8] = True
        image = torch.full((3, TOY_SIZE, TOY_SIZE), 0.4)
        image[:, parts[0]] = torch.tensor([0.9, 0.1, 0.1])[:, None]
        image[:, parts[1]] = torch.tensor([0.1, 0.9, 0.1])[:, None]
        item = {"image": image, "label": index % self.num_classes, "index": index,
                "object_mask": parts.any(dim=0), "part_masks": parts,
                "part_names": self.part_names, "part_keypoints": keypoints_from_masks(parts)}
        return {k: v for k, v in item.items()
                if k in ("image", "label", "index") or k in self.keys
                or (k == "part_names" and "part_masks" in self.keys)}


def tiny_model() -> ProtoPNet:
    """A small_cnn ProtoPNet for 32 px images (4x4 latent), 2 classes, 2 prototypes each."""
    return ProtoPNet("small_cnn", 2, prototypes_per_class=2, prototype_dim=4,
                     image_size=TOY_SIZE, backbone_options={"width": 2}).eval()
