"""XProtoNet: prototypes compared with occurrence-weighted features, multi-label outputs.

Source: Kim et al., "XProtoNet: Diagnosis in Chest Radiography with Global and Local
Explanations", CVPR 2021 (no official code; only its abstract was available to check here).
The architecture as two public re-implementations agree on it (hooman007/ProtoASNet
``src/models/XProtoNet.py``; aywi/mprotonet ``src/models.py`` with ``p_mode=2`` and, in its
XProtoNet runs, ``f_dist='cos'``):

- a CNN trunk, then two heads of 1x1 convolutions on its output: a *feature module* giving
  the latent map ``F(x)`` (B, D, h, w) and an *occurrence module* giving one *occurrence map*
  ``M_p(x)`` (h, w) per prototype, i.e. where the prototype's pattern is likely to occur;
- the prototype's feature vector is the occurrence-weighted pooling of the latent map,
  ``f_p(x) = sum_u M_p,u(x) F_u(x)`` over latent positions ``u``;
- the similarity is the cosine ``s(x, p) = <f_p(x), p> / (|f_p(x)| |p|)``;
- prototypes belong to one class each (a disease, as the abstract describes).

Both re-implementations solve single-label tasks with a softmax; for chest X-rays every class
gets its own sigmoid score ``P(y_c | x) = sigmoid(sum_k w_k s(x, p_k^c))`` over the
prototypes of class c (our reading of the paper's prediction; ``last_layer``).

Choices where the sources differ (all documented options or stated here):

- the feature module is ProtoPNet's add-on (conv, ReLU, conv; :func:`~prototypes.model.
  build_add_on_layers`) without its final sigmoid by default, as ProtoASNet, or with it, as
  MProtoNet (``latent_activation``);
- the occurrence module is conv(C -> D), ReLU, conv(D -> P), sigmoid, so occurrence values lie
  in (0, 1) (MProtoNet: the same with batch norms; ProtoASNet: a third conv and ``abs``);
- pooling is a plain sum (ProtoASNet; MProtoNet divides by h*w): the cosine does not depend
  on the scale of ``f_p``, so both give the same similarity;
- the similarity is the raw cosine, in [-1, 1] (ProtoASNet rescales to ``(cos + 1) / 2``,
  MProtoNet clamps at 0). With a sigmoid latent, feature vectors are positive, so pushed
  prototypes are too and every similarity lies in [0, 1]; a linear latent keeps negative
  similarities, i.e. evidence against a class, possible after the push;
- ``last_layer="own_class"`` (default) connects each class only to its own prototypes, as the
  formula above; ``"full"`` is ProtoPNet's dense last layer (both re-implementations).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prototypes.model import IMAGENET_MEAN, IMAGENET_STD, build_add_on_layers
from prototypes.prototype_network import PrototypeNetwork

__all__ = ["LAST_LAYER_TYPES", "LATENT_ACTIVATIONS", "XProtoNet", "XProtoNetOutput",
           "build_occurrence_module", "cosine_similarities", "occurrence_pooling"]

LAST_LAYER_TYPES = ("own_class", "full")
LATENT_ACTIVATIONS = ("sigmoid", "linear")


@dataclass
class XProtoNetOutput:
    """What :meth:`XProtoNet.forward` returns (B images, P prototypes, K classes, D latent
    channels, h x w latent positions).

    ``logits`` (B, K): pre-sigmoid multi-label scores; ``similarity_maps`` (B, P, h, w): the
    occurrence maps (so localization by upsampling shows where each prototype occurs);
    ``similarities`` (B, P): cosine similarity of each prototype with its occurrence-weighted
    feature vector (each prototype's score); ``prototype_features`` (B, P, D): those feature
    vectors ``f_p(x)``; ``latent`` (B, D, h, w): the feature module's output; ``images``
    (B, 3, H, W): the input in [0, 1], kept for losses that need a second pass on transformed
    inputs (the occurrence transformation loss); ``None`` when the output was computed from
    cached trunk maps.
    """

    logits: torch.Tensor
    similarity_maps: torch.Tensor
    similarities: torch.Tensor
    prototype_features: torch.Tensor
    latent: torch.Tensor
    images: torch.Tensor | None

    @property
    def occurrence_maps(self) -> torch.Tensor:
        """(B, P, h, w) the occurrence maps (the same tensor as ``similarity_maps``)."""
        return self.similarity_maps


def build_occurrence_module(in_channels: int, hidden_channels: int,
                            num_prototypes: int) -> nn.Sequential:
    """conv1x1(C -> hidden), ReLU, conv1x1(hidden -> P), Sigmoid: one map per prototype."""
    return nn.Sequential(nn.Conv2d(in_channels, hidden_channels, kernel_size=1), nn.ReLU(),
                         nn.Conv2d(hidden_channels, num_prototypes, kernel_size=1), nn.Sigmoid())


def occurrence_pooling(occurrence: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """``f[b, p] = sum_{h, w} occurrence[b, p, h, w] * latent[b, :, h, w]``.

    Args:
        occurrence: (B, P, h, w) occurrence maps.
        latent: (B, D, h, w) latent map.

    Returns:
        (B, P, D) one occurrence-weighted feature vector per prototype.
    """
    if occurrence.ndim != 4 or latent.ndim != 4 or occurrence.shape[0] != latent.shape[0] \
            or occurrence.shape[2:] != latent.shape[2:]:
        raise ValueError(f"occurrence (B, P, h, w) {tuple(occurrence.shape)} and latent "
                         f"(B, D, h, w) {tuple(latent.shape)} do not match")
    return torch.einsum("bphw,bdhw->bpd", occurrence, latent)


def cosine_similarities(features: torch.Tensor, prototypes: torch.Tensor,
                        epsilon: float = 1e-8) -> torch.Tensor:
    """Cosine similarity of each prototype's feature vector with the prototype.

    Args:
        features: (B, P, D) per-prototype feature vectors.
        prototypes: (P, D) prototype vectors.
        epsilon: lower bound on each norm (a zero vector has similarity 0).

    Returns:
        (B, P) ``<features[b, p], prototypes[p]> / (|features[b, p]| |prototypes[p]|)``.
    """
    if features.ndim != 3 or prototypes.ndim != 2 or features.shape[1:] != prototypes.shape:
        raise ValueError(f"features (B, P, D) {tuple(features.shape)} and prototypes (P, D) "
                         f"{tuple(prototypes.shape)} do not match")
    return F.cosine_similarity(features, prototypes.unsqueeze(0), dim=2, eps=epsilon)


class XProtoNet(PrototypeNetwork):
    """XProtoNet with ``prototypes_per_class`` prototypes of dimension ``prototype_dim`` per
    class; see the module docstring for the architecture and its sources.

    Args:
        backbone: a name from :data:`prototypes.backbones.BACKBONES` (the paper: DenseNet-121).
        num_classes: K, the number of labels (14 findings for ChestX-ray14).
        prototypes_per_class: prototypes per class (P = K * prototypes_per_class). Not stated
            in the sources found; 3 is our default (ProtoASNet's image config uses 10).
        prototype_dim: D, channels of the latent space and of the prototypes (128 as
            ProtoPNet's settings and MProtoNet; ProtoASNet uses 512).
        add_on: the feature module, ``"regular"`` or ``"bottleneck"``
            (:func:`~prototypes.model.build_add_on_layers`).
        latent_activation: ``"linear"`` removes the add-on's final sigmoid (ProtoASNet);
            ``"sigmoid"`` keeps it (latent in (0, 1), as ProtoPNet and MProtoNet). The default
            is the one that trained better on SyntheticRadiographs (test mean AUROC 0.94
            against 0.87 with the same small_cnn recipe and seed): with a positive latent, pushed
            prototypes are positive too, no similarity can turn negative, and an own-class
            last layer can then only raise the class scores.
        last_layer: ``"own_class"`` (each class scores only its own prototypes, weights start
            at 1) or ``"full"`` (every prototype feeds every class: 1 to its own class,
            ``incorrect_class_connection`` elsewhere).
        incorrect_class_connection: initial off-class weight of the ``"full"`` last layer
            (ProtoASNet's XProtoNet uses 0).
        mean, std: per-channel normalisation applied inside :meth:`forward` to images in
            [0, 1]; stored as buffers.
        image_size: (H, W) or int, the training image size; used to trace the trunk's
            receptive field (for projection records) and kept for reference.
        pretrained: backbone weights, see :func:`prototypes.backbones.build_backbone`.
        backbone_options: keyword arguments of the backbone constructor (``width`` for
            ``small_cnn``).

    ``add_on_layers`` holds both heads (``"feature"`` and ``"occurrence"``): they are the
    layers between trunk and prototypes, so ProtoPNet's training phases
    (:func:`~prototypes.training.set_phase`, :func:`~prototypes.training.build_optimizer`)
    train them together. Prototypes start uniform in [0, 1) and both heads' convolutions with
    Kaiming-normal (fan-out) weights and zero biases, as ProtoPNet.
    """

    def __init__(self, backbone: str = "densenet121", num_classes: int = 14, *,
                 prototypes_per_class: int = 3, prototype_dim: int = 128,
                 add_on: str = "regular", latent_activation: str = "linear",
                 last_layer: str = "own_class",
                 incorrect_class_connection: float = 0.0,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 image_size: int | tuple[int, int] = 224,
                 pretrained: str | Path | None = None,
                 backbone_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if last_layer not in LAST_LAYER_TYPES:
            raise ValueError(f"unknown last_layer {last_layer!r}; choose one of "
                             f"{LAST_LAYER_TYPES}")
        if latent_activation not in LATENT_ACTIVATIONS:
            raise ValueError(f"unknown latent_activation {latent_activation!r}; choose one of "
                             f"{LATENT_ACTIVATIONS}")
        trunk_channels = self._build_trunk(backbone, num_classes, prototypes_per_class,
                                           prototype_dim, mean, std, image_size, pretrained,
                                           backbone_options)
        self.last_layer_type = last_layer
        feature_module = build_add_on_layers(add_on, trunk_channels, prototype_dim)
        if latent_activation == "linear":
            feature_module = feature_module[:-1]
        self.add_on_layers = nn.ModuleDict({
            "feature": feature_module,
            "occurrence": build_occurrence_module(trunk_channels, prototype_dim,
                                                  self.num_prototypes),
        })
        self.prototype_vectors = nn.Parameter(torch.rand(self.num_prototypes, prototype_dim))
        self.last_layer = nn.Linear(self.num_prototypes, num_classes, bias=False)

        self._finish(mean, std,
                     0.0 if last_layer == "own_class" else incorrect_class_connection)

    @property
    def feature_module(self) -> nn.Module:
        """The head giving the latent map ``F(x)`` (B, D, h, w)."""
        return self.add_on_layers["feature"]

    @property
    def occurrence_module(self) -> nn.Module:
        """The head giving the occurrence maps ``M(x)`` (B, P, h, w)."""
        return self.add_on_layers["occurrence"]

    def occurrence(self, images: torch.Tensor) -> torch.Tensor:
        """(B, P, h, w) occurrence maps of images (B, 3, H, W) in [0, 1] (skips the feature
        module)."""
        return self.occurrence_module(self.features(self.normalize(images)))

    def class_weights(self) -> torch.Tensor:
        """(K, P) the last layer's weights as used: masked to own-class prototypes for
        ``last_layer="own_class"``."""
        weight = self.last_layer.weight
        if self.last_layer_type == "own_class":
            return weight * self.prototype_class_identity.t()
        return weight

    def forward(self, images: torch.Tensor) -> XProtoNetOutput:
        """Score images (B, 3, H, W) in [0, 1] (normalised here with the model's mean/std)."""
        return self.forward_from_trunk(self.features(self.normalize(images)), images)

    def forward_from_trunk(self, trunk: torch.Tensor,
                           images: torch.Tensor | None = None) -> XProtoNetOutput:
        """What :meth:`forward` does after the trunk, from its output ``trunk``
        (B, C, h, w); training with a frozen trunk's cached maps calls it without ``images``
        (:mod:`prototypes.trunk_cache`), which the transformation loss then cannot use."""
        latent = self.feature_module(trunk)
        occurrence = self.occurrence_module(trunk)
        features = occurrence_pooling(occurrence, latent)
        similarities = cosine_similarities(features, self.prototype_vectors)
        logits = F.linear(similarities, self.class_weights())
        return XProtoNetOutput(logits=logits, similarity_maps=occurrence,
                               similarities=similarities, prototype_features=features,
                               latent=latent, images=images)
