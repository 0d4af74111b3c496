"""What the model says about an (image, prototype) pair: the checked prototype ids, the
prototype's similarity map, and its score.

The score of a pair is one of :data:`SCORES`: the prototype's similarity at the latent
position where it peaks on the unperturbed image (``"peak"``; Xu-Darme et al. 2023,
romain-xu-darme/prototype_sanity_checks ``protopnet/get_prototype_stats.py`` lines 295-300) or
its pooled similarity over positions (``"pooled"``: ``out.similarities``, the prototype's score
in the classifier). Learned-mask localization explains one of them (its option ``score``) and the
localization metrics (fidelity, occlusion of parts, deletion/insertion; their option
``score``) read one of them, so that both can measure the same quantity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hdm.hooks import evaluation_mode
from prototypes.model import ProtoPNet

__all__ = ["SCORES", "PairScores", "prototype_id_tensor", "prototype_scores",
           "prototype_similarity_maps"]

SCORES = ("pooled", "peak")
"""``"pooled"``: the pooled similarity ``out.similarities`` (ProtoPNet's max over positions,
XProtoNet's occurrence-weighted cosine); ``"peak"``: the similarity at the position where the
prototype peaks on the unperturbed image."""


def prototype_id_tensor(model: ProtoPNet, images: Tensor,
                        prototype_ids: Tensor | Sequence[int]) -> Tensor:
    """``prototype_ids`` as a (B,) int64 tensor on the images' device, checked: one id per
    image of ``images`` (B, C, H, W), each in ``[0, model.num_prototypes)``."""
    ids = torch.as_tensor(prototype_ids, device=images.device).long().reshape(-1)
    if images.ndim != 4 or ids.shape[0] != images.shape[0]:
        raise ValueError(f"need one prototype id per image: images {tuple(images.shape)}, "
                         f"prototype_ids {tuple(ids.shape)}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= model.num_prototypes):
        raise ValueError(f"prototype_ids must be in [0, {model.num_prototypes}), got "
                         f"{ids.tolist()}")
    return ids


def prototype_scores(similarities: Tensor, prototype_ids: Tensor) -> Tensor:
    """(N,) score of prototype ``prototype_ids[n]`` in row ``n`` of ``similarities`` (N, P):
    its pooled similarity, the quantity the last layer weighs (``out.similarities``)."""
    return similarities.gather(1, prototype_ids[:, None]).squeeze(1)


def prototype_similarity_maps(model: ProtoPNet, images: Tensor,
                              prototype_ids: Tensor | Sequence[int]) -> Tensor:
    """(B, h, w) latent similarity map (XProtoNet: occurrence map) of prototype
    ``prototype_ids[b]`` on ``images[b]`` (eval mode, no grad)."""
    ids = prototype_id_tensor(model, images, prototype_ids)
    with evaluation_mode(model):
        similarity = model(images).similarity_maps
    return similarity[torch.arange(ids.shape[0], device=ids.device), ids]


class PairScores:
    """The score (one of :data:`SCORES`) of each pair's prototype, for images that are copies
    of the pair's image.

    Built from the unperturbed batch: ``peaks`` (B,) is the flat latent position (in a map
    of ``latent_size`` (h, w)) where each pair's prototype peaks there, and ``reference``
    (B,) its score; ``output``, when given, is the model's output on ``images``, which is then
    not passed again. Called on a model output of ``R * B`` rows (``R`` copies of the batch,
    copy-major), it returns the ``R * B`` scores, so it also serves as a callable target for
    :mod:`hdm`.
    """

    def __init__(self, model: nn.Module, images: Tensor, prototype_ids: Tensor,
                 score: str, *, output: Any = None) -> None:
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        self.model = model
        self.prototype_ids = prototype_ids
        self.score = score
        if output is None:  # else the caller's output of the model on ``images`` (B rows)
            with torch.no_grad():
                output = model(images)
        rows = torch.arange(prototype_ids.shape[0], device=prototype_ids.device)
        self.latent_size = tuple(output.similarity_maps.shape[-2:])
        self.peaks = output.similarity_maps[rows, prototype_ids].flatten(1).argmax(dim=1)
        self.reference = self(output)

    def __call__(self, output: Any) -> Tensor:
        rows = output.similarities.shape[0]
        repeats = rows // self.prototype_ids.shape[0]
        ids = self.prototype_ids.repeat(repeats)
        every = torch.arange(rows, device=ids.device)
        if self.score == "pooled":
            return output.similarities[every, ids]
        maps = output.similarity_maps[every, ids].flatten(1)
        return maps.gather(1, self.peaks.repeat(repeats)[:, None]).squeeze(1)

    def relative(self, output: Any) -> Tensor:
        """The scores divided by the unperturbed ``|reference|``: 1 on the pair's own image,
        so curves and areas are comparable across prototypes and models."""
        rows = output.similarities.shape[0]
        reference = self.reference.abs().clamp(min=1e-12).repeat(rows // self.reference.shape[0])
        return self(output) / reference

    def of_images(self, images: Tensor) -> Tensor:
        """Scores of ``R * B`` images (R copies of the batch, copy-major), without grad."""
        with torch.no_grad():
            return self(self.model(images))
