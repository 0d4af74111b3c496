"""A prototype's score as a target for other attribution libraries.

Attribution libraries explain a scalar per image, usually a class logit. In a prototype
network the natural question is "where does prototype j find its pattern in this image?",
i.e. the prototype's pooled similarity ``out.similarities[:, j]`` (ProtoPNet: the
max-pooled log/linear similarity the last layer weighs; XProtoNet: the occurrence-weighted
cosine). :class:`PrototypeScore` makes that quantity usable everywhere:

- **pytorch-grad-cam**: the library calls each target on one row of the model's output and
  needs the model to return a tensor. Give it ``score.similarity_model`` (a module returning
  the (B, P) similarities) and ``[score] * B`` as targets::

      from pytorch_grad_cam import GradCAM
      cam = GradCAM(model=score.similarity_model, target_layers=[model.features[-1]])
      maps = cam(input_tensor=images, targets=[score] * len(images))

- **captum**: ``score.forward`` (or ``score`` itself called on images) is the forward
  function returning the (B,) scores::

      from captum.attr import LayerGradCam, NoiseTunnel, Saliency
      gradients = Saliency(score.forward).attribute(images)
      cam = LayerGradCam(score.forward, model.features[-1]).attribute(images)

- **hdm** and :func:`prototypes.localize`-style code: a callable ``output -> (B,)`` target.

``prototype_id`` is one id for every image, or a (B,) tensor of one id per image (then the
batch must have B images; pytorch-grad-cam's per-row call needs one id, so build one score
per id there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["PrototypeScore", "PrototypeSimilarities"]


class PrototypeSimilarities(nn.Module):
    """``model`` with a plain tensor output: the (B, P) pooled similarities
    (``model(images).similarities``), for libraries that need a tensor-valued model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images).similarities


class PrototypeScore:
    """The pooled similarity of prototype ``prototype_id`` of ``model`` (see the module
    docstring for how pytorch-grad-cam, captum and hdm use it).

    Called on a model output it returns that prototype's score: on a ProtoPNet / XProtoNet
    output or a (B, P) similarity tensor, a (B,) tensor; on one row (P,) of similarities (what
    pytorch-grad-cam passes), a scalar. Called on images (B, 3, H, W) it runs the model and
    returns the (B,) scores, as :meth:`forward`.
    """

    def __init__(self, model: nn.Module, prototype_id: int | Sequence[int] | Tensor) -> None:
        count = model.prototype_vectors.shape[0]
        ids = torch.as_tensor(prototype_id, dtype=torch.long)
        if ids.ndim > 1 or ids.numel() == 0 or ids.min() < 0 or ids.max() >= count:
            raise ValueError(f"prototype_id must be an id or a 1-D list of ids in [0, {count}), "
                             f"got {prototype_id!r}")
        self.model = model
        self.prototype_id = ids
        self.similarity_model = PrototypeSimilarities(model)

    def __repr__(self) -> str:
        return f"PrototypeScore(prototype_id={self.prototype_id.tolist()})"

    def _select(self, similarities: Tensor) -> Tensor:
        ids = self.prototype_id.to(similarities.device)
        if similarities.ndim == 1:  # one image's row (pytorch-grad-cam)
            if ids.ndim != 0:
                raise ValueError("one output row needs a single prototype id")
            return similarities[ids]
        if ids.ndim == 0:
            return similarities[:, ids]
        if ids.shape[0] != similarities.shape[0]:
            raise ValueError(f"{ids.shape[0]} prototype ids for {similarities.shape[0]} images")
        return similarities.gather(1, ids[:, None]).squeeze(1)

    def forward(self, images: Tensor) -> Tensor:
        """(B,) scores of images (B, 3, H, W) in [0, 1]: captum's forward function."""
        return self._select(self.model(images).similarities)

    def __call__(self, value: Any) -> Tensor:
        if isinstance(value, Tensor):
            if value.ndim == 4:
                return self.forward(value)
            return self._select(value)
        return self._select(value.similarities)
