"""Tiny models with known behaviour for the hdm tests (32 x 32 images, CPU, milliseconds)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

IMAGE_SIZE = 32
BOX = (10, 22, 12, 24)
"""The evidence box ``(y0, y1, x0, x1)`` of :class:`RegionModel`: 144 of 1024 pixels (14%)."""


class _ClassZeroEvidence(nn.Module):
    """Two bias-free 3x3 convolutions and a linear head whose class 0 weights all features by
    ``scale`` and the other classes by 0; subclasses decide which pixels reach the body."""

    def __init__(self, classes: int, scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            nn.ReLU(),
        )
        self.head = nn.Linear(8, classes, bias=False)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[0] = scale


class RegionModel(_ClassZeroEvidence):
    """Class 0's logit grows with the content of a fixed box; nothing outside the box counts.

    ``logits[:, 0] = scale * mean_{box} sum_c ReLU(conv(ReLU(conv(x * box))))``, the other
    classes' logits are 0. The input is cut to the box before any layer, so the score
    depends on the pixels inside the box only. The convolutions have no bias, so the
    feature maps vanish more than 2 px (two 3x3 kernels) away from the box.
    """

    def __init__(self, classes: int = 4, scale: float = 12.0) -> None:
        super().__init__(classes, scale)
        y0, y1, x0, x1 = BOX
        box = torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE)
        box[..., y0:y1, x0:x1] = 1
        self.register_buffer("box", box)

    def forward(self, images: Tensor) -> Tensor:
        features = self.body(images * self.box) * self.box
        return self.head(features.sum(dim=(2, 3)) / self.box.sum())


CENTRE = (8, 24)
"""The rows and columns ``(start, end)`` of the only pixels :class:`CentreModel` sees."""


class CentreModel(_ClassZeroEvidence):
    """Class 0's logit grows with the content of the centre 16x16 pixels (:data:`CENTRE`).

    The image is cropped to the centre before any layer, so no pixel outside it reaches the
    output, not even through a convolution's padding; the other classes' logits are 0.
    """

    def __init__(self, classes: int = 4, scale: float = 12.0) -> None:
        super().__init__(classes, scale)

    def forward(self, images: Tensor) -> Tensor:
        start, end = CENTRE
        return self.head(self.body(images[..., start:end, start:end]).mean(dim=(2, 3)))


class SmallCNN(nn.Module):
    """A generic classifier: three conv blocks at 32, 16 and 8 px, global pooling, linear."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(16, classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.features(images).mean(dim=(2, 3)))


class SpatialCNN(nn.Module):
    """A classifier whose linear head weighs every 4x4 cell separately (no global pooling).

    ``gain`` scales the head so that random weights already give input-dependent logits
    of a few units; two random draws attend to unrelated places.
    """

    def __init__(self, classes: int = 5, gain: float = 30.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(4),
        )
        self.classifier = nn.Linear(8 * (IMAGE_SIZE // 4) ** 2, classes)
        with torch.no_grad():
            self.classifier.weight.mul_(gain)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.features(images).flatten(1))


@dataclass
class PrototypeOutput:
    """An output object like a prototype network's: logits plus per-prototype scores."""

    logits: Tensor
    similarities: Tensor


class PrototypeLikeModel(nn.Module):
    """Wraps :class:`SmallCNN` features; returns a dataclass with logits and similarities."""

    def __init__(self, prototypes: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.cnn = SmallCNN(classes=prototypes)
        self.last_layer = nn.Linear(prototypes, classes)

    def forward(self, images: Tensor) -> PrototypeOutput:
        similarities = self.cnn(images)
        return PrototypeOutput(logits=self.last_layer(similarities), similarities=similarities)


def box_regions(batch: int) -> Tensor:
    """The :data:`BOX` as boolean regions ``(batch, 32, 32)``."""
    y0, y1, x0, x1 = BOX
    regions = torch.zeros(batch, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.bool)
    regions[:, y0:y1, x0:x1] = True
    return regions
