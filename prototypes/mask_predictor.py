"""An amortized mask predictor: a light decoder that predicts the learned mask of any (image,
prototype) pair of a trained prototype network in one pass, instead of optimising it.

Dabkowski & Gal ("Real time image saliency for black box classifiers", NeurIPS 2017) train a
network that maps an image and a class to a saliency mask, with the preservation and deletion
objective that the optimised masks of :mod:`hdm` minimise; here the class is a prototype. The
objective and its training loop are in :mod:`prototypes.mask_predictor_training`.

Architecture (our choices, each an option of :class:`MaskPredictorConfig`):

- **Encoder**: the model's own frozen trunk. Forward hooks catch the output of the last
  trunk stage (:func:`trunk_stages`: the top-level children of an ``nn.Sequential`` trunk,
  the MBConv blocks of an EfficientNet-Lite) of each of the ``levels`` coarsest resolutions
  (the last stage of a resolution is followed by a resolution change, so no later in-place
  op overwrites it). The
  coarsest level is the trunk's output, to which the latent map (the add-on layers' output,
  where the prototypes live) is concatenated. All features come from the one model pass that
  also gives the similarity maps; they are computed once per image and shared by all its
  prototypes.
- **Decoder**: top-down, as a feature pyramid (Lin et al., CVPR 2017): each level's features
  go through a 1x1 convolution to ``channels`` (per image), are gathered for the pairs, added
  to the upsampled coarser level, conditioned on the prototype, and refined by a 3x3
  convolution, GroupNorm and ReLU. A 1x1 convolution gives the mask logits on the finest
  level's grid; ``sigmoid`` then bilinear upsampling give the mask on the image.
- **Conditioning** on the prototype (``conditioning``): ``"similarity"`` concatenates the
  pair's latent similarity map (min-max normalised, and divided by its maximum), resized to
  each level, to that level's input; ``"vector"`` modulates every level with the prototype
  vector (FiLM: Perez et al., AAAI 2018, ``x * (1 + gamma(p)) + beta(p)``); ``"both"`` does both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hdm.hooks import evaluation_mode, record_activations
from hdm.maps import resize_maps
from prototypes.prototype_network import PrototypeNetwork

__all__ = ["CONDITIONINGS", "MaskPredictor", "MaskPredictorConfig", "PairFeatures",
           "trunk_levels", "trunk_stages"]

CONDITIONINGS = ("similarity", "vector", "both")
"""How the decoder learns which prototype to localize (module docstring)."""

SIMILARITY_CHANNELS = 2
"""The similarity map enters as two channels: min-max normalised, and divided by its maximum
(which keeps how strongly the prototype is present)."""


@dataclass(frozen=True)
class MaskPredictorConfig:
    """The predictor's architecture (stored with its weights in ``masker.pt``).

    Attributes:
        conditioning: one of :data:`CONDITIONINGS`.
        levels: trunk resolutions the decoder reads, coarsest first (the trunk's output is
            always one); the mask's grid is the finest one's.
        channels: width of the decoder.
    """

    conditioning: str = "similarity"
    levels: int = 3
    channels: int = 32

    def __post_init__(self) -> None:
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got "
                             f"{self.conditioning!r}")
        for name in ("levels", "channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def trunk_stages(trunk: nn.Module) -> list[nn.Module]:
    """The modules whose outputs are the trunk's successive feature maps, in order.

    The children of an ``nn.Sequential`` trunk (the small CNN, ResNet, VGG, DenseNet); for any
    other trunk, what its ``feature_stages()`` method returns (an EfficientNet-Lite: its MBConv
    blocks) followed by the trunk itself, whose output is the trunk's output.
    """
    if isinstance(trunk, nn.Sequential) and len(trunk):
        return list(trunk)
    stages = getattr(trunk, "feature_stages", None)
    if not callable(stages):
        raise ValueError("the mask predictor reads a trunk (model.features) that is an "
                         "nn.Sequential or has a feature_stages() method; "
                         f"{type(trunk).__name__} has neither")
    return [*stages(), trunk]


def trunk_levels(model: PrototypeNetwork, levels: int) -> tuple[list[int], list[int]]:
    """Indices into :func:`trunk_stages` of the stages the decoder reads, coarsest first, and
    their channels.

    For each spatial size the trunk produces, the last stage producing it; the ``levels``
    coarsest of these sizes (fewer when the trunk has fewer). Found with one pass of a zero
    image of the model's ``image_size``.
    """
    stages = trunk_stages(model.features)
    parameter = next(model.parameters())
    with evaluation_mode(model.features), record_activations(stages) as recorded, \
            torch.no_grad():
        model.features(torch.zeros(1, 3, *model.image_size, device=parameter.device,
                                   dtype=parameter.dtype))
    sides = [tuple(recorded[i].shape[-2:]) for i in range(len(stages))]
    widths = [int(recorded[i].shape[1]) for i in range(len(stages))]
    last_of_side = {side: index for index, side in enumerate(sides)}  # the last stage wins
    chosen = sorted(last_of_side.values())[-levels:]  # holds the trunk's output, the last
    chosen = sorted(chosen, key=lambda i: sides[i][0] * sides[i][1])  # coarsest first
    return chosen, [widths[i] for i in chosen]


@dataclass
class PairFeatures:
    """What one model pass over the distinct images gives the decoder.

    Attributes:
        levels: per level, coarsest first, ``(U, C_l, h_l, w_l)`` features of the ``U``
            distinct images (the coarsest with the latent map concatenated).
        image_index: ``(N,)`` which distinct image each pair's image is.
        prototype_ids: ``(N,)``.
        similarity: ``(N, h, w)`` each pair's latent similarity map.
        output: the model's output for the ``U`` distinct images.
    """

    levels: list[Tensor]
    image_index: Tensor
    prototype_ids: Tensor
    similarity: Tensor
    output: Any


class MaskPredictor(nn.Module):
    """Predicts the mask ``(N, H, W)`` in [0, 1] of ``N`` (image, prototype) pairs of ``model``.

    The model is not a submodule (its weights are not the predictor's and are not saved with
    it): :meth:`features` takes it as an argument, so the same predictor can be applied to a
    copy of the model (e.g. the randomised model of the sanity check).

    Args:
        model: the trained prototype network the predictor is built for (only its trunk
            layout, latent width, prototype dimension and image size are read).
        config: the architecture.
    """

    def __init__(self, model: PrototypeNetwork, config: MaskPredictorConfig | None = None
                 ) -> None:
        super().__init__()
        self.config = config or MaskPredictorConfig()
        self.trunk_indices, widths = trunk_levels(model, self.config.levels)
        widths[0] += int(model.prototype_dim)  # the latent map joins the coarsest level
        self.prototype_dim = int(model.prototype_dim)
        channels = self.config.channels
        uses_similarity = self.config.conditioning in ("similarity", "both")
        self.uses_vector = self.config.conditioning in ("vector", "both")
        extra = SIMILARITY_CHANNELS if uses_similarity else 0
        self.uses_similarity = uses_similarity
        self.lateral = nn.ModuleList(nn.Conv2d(width, channels, 1) for width in widths)
        self.refine = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels + extra, channels, 3, padding=1),
                          nn.GroupNorm(min(8, channels), channels), nn.ReLU())
            for _ in widths)
        self.film = (nn.ModuleList(nn.Linear(self.prototype_dim, 2 * channels) for _ in widths)
                     if self.uses_vector else None)
        if self.film is not None:
            for layer in self.film:  # start as the identity modulation
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.head = nn.Conv2d(channels, 1, 1)

    def description(self) -> dict[str, Any]:
        """The config and the trunk layout, as plain values (checked again on loading)."""
        return {**asdict(self.config), "trunk_indices": list(self.trunk_indices),
                "prototype_dim": self.prototype_dim}

    def features(self, model: PrototypeNetwork, images: Tensor, prototype_ids: Tensor,
                 image_index: Tensor | None = None) -> PairFeatures:
        """One pass of ``model`` (frozen, no grad) over the distinct images, recording the
        decoder's trunk levels.

        Without ``image_index``, ``images`` ``(N, 3, H, W)`` holds pair ``n``'s image in row
        ``n``, and pairs that share an image (the same tensor values) share its pass: only the
        ``U <= N`` distinct images are passed. With ``image_index`` ``(N,)``, ``images``
        ``(U, 3, H, W)`` are already distinct and pair ``n``'s image is
        ``images[image_index[n]]``.
        """
        if image_index is None:
            distinct, image_index = torch.unique(images.flatten(1), dim=0, return_inverse=True)
            distinct = distinct.view(-1, *images.shape[1:])
        else:
            distinct = images
        stages = trunk_stages(model.features)
        children = [stages[i] for i in self.trunk_indices]
        with evaluation_mode(model), record_activations(children) as recorded:
            output = model(distinct)
        levels = [recorded[i] for i in range(len(children))]
        latent = output.latent
        if latent.shape[-2:] != levels[0].shape[-2:]:
            latent = F.interpolate(latent, size=levels[0].shape[-2:], mode="bilinear",
                                   align_corners=False)
        levels[0] = torch.cat([levels[0], latent], dim=1)
        similarity = output.similarity_maps[image_index, prototype_ids]
        return PairFeatures(levels=levels, image_index=image_index,
                            prototype_ids=prototype_ids, similarity=similarity, output=output)

    def logits(self, model: PrototypeNetwork, found: PairFeatures) -> Tensor:
        """``(N, h, w)`` mask logits on the finest level's grid."""
        vectors = model.prototype_vectors.detach().flatten(1)[found.prototype_ids].to(
            found.similarity)  # the model stays frozen: no gradient reaches its prototypes
        if self.uses_similarity:
            similarity = found.similarity
            low = similarity.amin(dim=(1, 2), keepdim=True)
            high = similarity.amax(dim=(1, 2), keepdim=True)
            tiny = torch.finfo(similarity.dtype).tiny
            guide = torch.stack([(similarity - low) / (high - low).clamp(min=tiny),
                                 similarity / high.abs().clamp(min=tiny)], dim=1)
        x: Tensor | None = None
        for level, features in enumerate(found.levels):
            lateral = self.lateral[level](features)[found.image_index]  # per image, gathered
            if x is None:
                x = lateral
            else:
                x = F.interpolate(x, size=lateral.shape[-2:], mode="bilinear",
                                  align_corners=False) + lateral
            if self.film is not None:
                gamma, beta = self.film[level](vectors).chunk(2, dim=1)
                x = x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
            if self.uses_similarity:
                resized = F.interpolate(guide, size=x.shape[-2:], mode="bilinear",
                                        align_corners=False)
                x = torch.cat([x, resized], dim=1)
            x = self.refine[level](x)
        assert x is not None
        return self.head(x)[:, 0]

    def forward(self, model: PrototypeNetwork, images: Tensor, prototype_ids: Tensor
                ) -> Tensor:
        """``(N, H, W)`` masks in [0, 1] of prototype ``prototype_ids[n]`` in ``images[n]``:
        one model pass over the distinct images, then the decoder for all pairs at once."""
        found = self.features(model, images, prototype_ids)
        return resize_maps(torch.sigmoid(self.logits(model, found)), tuple(images.shape[-2:]))
