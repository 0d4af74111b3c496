"""ProtoPNet: a CNN trunk, add-on layers, prototypes compared by squared L2 distance, and a
linear layer from prototype similarities to class logits.

Source: Chen et al., "This Looks Like That: Deep Learning for Interpretable Image
Recognition", NeurIPS 2019; reference code cfchen-duke/ProtoPNet ``model.py`` (``PPNet``,
``construct_PPNet``), whose defaults and initialisation are reproduced here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prototypes.feature_alignment import shallow_layer_index, trunk_maps
from prototypes.prototype_network import PrototypeNetwork
from prototypes.similarity import ACTIVATIONS, distance_to_similarity, squared_l2_distances

__all__ = ["ADD_ON_TYPES", "IMAGENET_MEAN", "IMAGENET_STD", "ProtoPNet", "ProtoPNetOutput",
           "build_add_on_layers"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Normalisation of the original (``preprocess.py``), i.e. torchvision's ImageNet values."""

ADD_ON_TYPES = ("regular", "bottleneck")


@dataclass
class ProtoPNetOutput:
    """What :meth:`ProtoPNet.forward` returns (B images, P prototypes, K classes).

    ``logits`` (B, K); ``similarity_maps`` (B, P, h, w) similarity at every latent position;
    ``similarities`` (B, P) max-pooled similarity (each prototype's score);
    ``min_distances`` (B, P); ``distance_maps`` (B, P, h, w) squared L2 distances;
    ``latent`` (B, D, h, w) the add-on layers' output the prototypes live in; ``trunk``
    (B, C, h, w) the trunk's output and ``shallow`` the output of its layer
    ``ProtoPNet.shallow_index`` (``None`` unless :meth:`ProtoPNet.keep_shallow_map` was
    called), which the feature-alignment loss
    compares (:mod:`prototypes.feature_alignment`).
    """

    logits: torch.Tensor
    similarity_maps: torch.Tensor
    similarities: torch.Tensor
    min_distances: torch.Tensor
    distance_maps: torch.Tensor
    latent: torch.Tensor
    trunk: torch.Tensor | None = None
    shallow: torch.Tensor | None = None


def build_add_on_layers(kind: str, in_channels: int, prototype_dim: int) -> nn.Sequential:
    """The 1x1-conv layers between trunk and prototypes, as the original's ``PPNet.__init__``.

    ``regular``: conv(C -> D), ReLU, conv(D -> D), Sigmoid.
    ``bottleneck``: pairs conv(c -> c'), ReLU, conv(c' -> c'), with ``c' = max(D, c // 2)`` and
    ``c`` halving each time, until D channels are reached; each pair ends in a ReLU except the
    last, which ends in a Sigmoid (at least one pair, even when C <= D).
    """
    if kind == "regular":
        return nn.Sequential(nn.Conv2d(in_channels, prototype_dim, kernel_size=1), nn.ReLU(),
                             nn.Conv2d(prototype_dim, prototype_dim, kernel_size=1), nn.Sigmoid())
    if kind != "bottleneck":
        raise ValueError(f"unknown add_on {kind!r}; choose one of {ADD_ON_TYPES}")
    layers: list[nn.Module] = []
    channels = in_channels
    while channels > prototype_dim or not layers:
        out = max(prototype_dim, channels // 2)
        layers += [nn.Conv2d(channels, out, kernel_size=1), nn.ReLU(),
                   nn.Conv2d(out, out, kernel_size=1)]
        layers.append(nn.ReLU() if out > prototype_dim else nn.Sigmoid())
        channels //= 2
    return nn.Sequential(*layers)


class ProtoPNet(PrototypeNetwork):
    """ProtoPNet with ``prototypes_per_class`` prototypes of ``prototype_dim`` x 1 x 1 per class.

    Args:
        backbone: a name from :data:`prototypes.backbones.BACKBONES`.
        num_classes: K.
        prototypes_per_class: prototypes per class (P = K * prototypes_per_class; the
            original uses 10).
        prototype_dim: D, channels of the latent space (the original's settings use 128).
        add_on: ``"regular"`` (the original's settings) or ``"bottleneck"`` (the default of its
            ``construct_PPNet``); see :func:`build_add_on_layers`.
        activation: ``"log"`` similarity ``log((d + 1) / (d + epsilon))`` or ``"linear"``
            (``-d``).
        incorrect_class_connection: initial last-layer weight from a prototype to the other
            classes (own class: 1); the original uses -0.5.
        epsilon: the log similarity's epsilon (1e-4 in the original).
        mean, std: per-channel normalisation applied inside :meth:`forward` to images in
            [0, 1]; stored as buffers (in the state dict).
        image_size: (H, W) or int, the size of the training images; used to trace the trunk's
            receptive field once (its geometry does not depend on the size) and kept for
            reference like the original's ``img_size``.
        pretrained: backbone weights, see :func:`prototypes.backbones.build_backbone`.
        backbone_options: keyword arguments of the backbone constructor (``width`` for
            ``small_cnn``).

    Prototypes are initialised uniformly in [0, 1) (``torch.rand``), add-on convolutions with
    Kaiming-normal (fan-out) weights and zero biases, the last layer (no bias) with +1 from
    each prototype to its class and ``incorrect_class_connection`` elsewhere, all as the
    original.
    """

    def __init__(self, backbone: str, num_classes: int, *, prototypes_per_class: int = 10,
                 prototype_dim: int = 128, add_on: str = "regular", activation: str = "log",
                 incorrect_class_connection: float = -0.5, epsilon: float = 1e-4,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 image_size: int | tuple[int, int] = 224,
                 pretrained: str | Path | None = None,
                 backbone_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}")
        trunk_channels = self._build_trunk(backbone, num_classes, prototypes_per_class,
                                           prototype_dim, mean, std, image_size, pretrained,
                                           backbone_options)
        self.activation = activation
        self.epsilon = epsilon
        self.add_on_layers = build_add_on_layers(add_on, trunk_channels, prototype_dim)
        self.prototype_vectors = nn.Parameter(
            torch.rand(self.num_prototypes, prototype_dim, 1, 1))
        self.last_layer = nn.Linear(self.num_prototypes, num_classes, bias=False)

        self._finish(mean, std, incorrect_class_connection)
        self.shallow_index: int | None = None
        """Top-level trunk child whose output ``forward`` also returns (``output.shallow``)
        for the feature-alignment loss; ``None`` until :meth:`keep_shallow_map`."""

    def keep_shallow_map(self) -> None:
        """Make :meth:`forward` also return the trunk's shallow map, which the
        feature-alignment loss needs (:func:`prototypes.feature_alignment.shallow_layer_index`
        picks the layer). Off by default, so inference and localization pay nothing for it."""
        self.shallow_index = shallow_layer_index(self.features, self.image_size,
                                                 self.latent_size)

    def latent(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) latent map of images (B, 3, H, W) in [0, 1]: trunk then add-on."""
        return self.add_on_layers(self.features(self.normalize(images)))

    def distances(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, P, h, w) squared L2 distances from every latent patch to every prototype."""
        return squared_l2_distances(latent, self.prototype_vectors)

    def similarity(self, distances: torch.Tensor) -> torch.Tensor:
        """This model's distance-to-similarity function, elementwise."""
        return distance_to_similarity(distances, self.activation, self.epsilon)

    def forward(self, images: torch.Tensor) -> ProtoPNetOutput:
        """Classify images (B, 3, H, W) in [0, 1] (normalised here with the model's mean/std).

        As the original's ``forward``: min-pool the distances over positions, turn the
        minima into similarities, and feed those to the last layer.
        """
        trunk, shallow = trunk_maps(self.features, self.normalize(images), self.shallow_index)
        return self.forward_from_trunk(trunk, shallow)

    def forward_from_trunk(self, trunk: torch.Tensor,
                           shallow: torch.Tensor | None = None) -> ProtoPNetOutput:
        """What :meth:`forward` does after the trunk, from its output ``trunk``
        (B, C, h, w) (and the shallow map, when kept); training with a frozen trunk's cached
        maps calls it (:mod:`prototypes.trunk_cache`)."""
        latent = self.add_on_layers(trunk)
        distance_maps = self.distances(latent)
        min_distances = distance_maps.flatten(2).min(dim=2).values
        similarities = self.similarity(min_distances)
        return ProtoPNetOutput(logits=self.last_layer(similarities),
                               similarity_maps=self.similarity(distance_maps),
                               similarities=similarities, min_distances=min_distances,
                               distance_maps=distance_maps, latent=latent, trunk=trunk,
                               shallow=shallow)

