"""Removing prototypes from a ProtoPNet, and the original's pruning rule.

Source: cfchen-duke/ProtoPNet ``prune.py`` (``prune_prototypes``) and ``model.py``
(``PPNet.prune_prototypes``): for every prototype, find its k nearest training patches (one per
image, :func:`prototypes.nearest_patches`); remove the prototype when fewer than ``threshold``
of them come from images of its own class. Removing a prototype deletes its vector, its row of
the class identity and its column of the last layer; the remaining prototypes keep their
order. The original then fine-tunes the last layer (done by the application).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from prototypes.model import ProtoPNet
from prototypes.nearest_patches import NearestPatches

__all__ = ["PruningDecision", "pruning_decisions", "resize_prototypes", "select_prototypes"]


def _require_protopnet(model: nn.Module, what: str) -> ProtoPNet:
    if not isinstance(model, ProtoPNet):
        raise TypeError(f"{what} works on ProtoPNet models, not {type(model).__name__} (an "
                        "XProtoNet prototype's score also depends on its own occurrence head)")
    return model


def resize_prototypes(model: ProtoPNet, class_identity: torch.Tensor) -> ProtoPNet:
    """Give ``model`` (in place) as many prototypes as ``class_identity`` (P, K) has rows,
    with that class identity; vectors and last layer become zeros of the new shapes.

    Used to load the state dict of a pruned model into a freshly built one.
    """
    _require_protopnet(model, "resize_prototypes")
    count, classes = class_identity.shape
    if classes != model.num_classes:
        raise ValueError(f"class identity has {classes} classes, the model {model.num_classes}")
    vectors = model.prototype_vectors
    model.prototype_vectors = nn.Parameter(
        vectors.new_zeros(count, *vectors.shape[1:]), requires_grad=vectors.requires_grad)
    weight = model.last_layer.weight
    model.last_layer = nn.Linear(count, classes, bias=False).to(weight.device, weight.dtype)
    model.last_layer.weight.requires_grad_(weight.requires_grad)
    with torch.no_grad():
        model.last_layer.weight.zero_()
    model.prototype_class_identity = class_identity.to(model.prototype_class_identity)
    model.num_prototypes = count
    return model


def select_prototypes(model: ProtoPNet, keep: Iterable[int], *,
                      last_layer_weight: torch.Tensor | None = None) -> ProtoPNet:
    """A copy of ``model`` with only the prototypes ``keep`` (in the given order).

    ``last_layer_weight`` (K, len(keep)) replaces the kept columns of the last layer when
    given (:func:`prototypes.merge_duplicates` sums the columns of merged prototypes).
    ``model`` itself is not changed. ``prototypes_per_class`` keeps its configured value;
    after pruning, classes may hold fewer prototypes (see ``prototype_class_identity``).
    """
    _require_protopnet(model, "select_prototypes")
    keep = torch.as_tensor(list(keep), dtype=torch.long)
    if keep.numel() == 0:
        raise ValueError("select_prototypes: keep at least one prototype")
    if keep.min() < 0 or keep.max() >= model.num_prototypes or keep.unique().numel() != len(keep):
        raise ValueError(f"select_prototypes: keep must hold distinct ids in "
                         f"[0, {model.num_prototypes}), got {keep.tolist()}")
    device = model.prototype_vectors.device
    index = keep.to(device)
    weight = (model.last_layer.weight[:, index] if last_layer_weight is None
              else last_layer_weight.to(device))
    if weight.shape != (model.num_classes, len(keep)):
        raise ValueError(f"last_layer_weight must be (K, {len(keep)}), got {tuple(weight.shape)}")
    pruned = copy.deepcopy(model)
    resize_prototypes(pruned, model.prototype_class_identity[index])
    with torch.no_grad():
        pruned.prototype_vectors.copy_(model.prototype_vectors[index])
        pruned.last_layer.weight.copy_(weight)
    return pruned


@dataclass(frozen=True)
class PruningDecision:
    """Why prototype ``prototype`` of class ``class_index`` is kept or removed: ``own_class``
    of its ``k`` nearest training patches come from its class (``sample_indices`` and
    ``labels`` list them, nearest first); removed when ``own_class < threshold``."""

    prototype: int
    class_index: int
    k: int
    threshold: int
    own_class: int
    sample_indices: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def removed(self) -> bool:
        return self.own_class < self.threshold

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"prototype": self.prototype, "class_index": self.class_index, "k": self.k,
                "threshold": self.threshold, "own_class": self.own_class,
                "removed": self.removed, "sample_indices": list(self.sample_indices),
                "labels": list(self.labels)}


def pruning_decisions(nearest: NearestPatches, prototype_classes: torch.Tensor,
                      threshold: int) -> list[PruningDecision]:
    """The original's rule on precomputed nearest patches: one decision per prototype.

    ``nearest``: the k nearest *training* patches of each prototype (one per image, as
    :func:`prototypes.nearest_patches`); ``prototype_classes`` (P,): each prototype's class;
    a prototype is removed when fewer than ``threshold`` of its k neighbours have its class.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    labels = nearest.labels.cpu()
    classes = prototype_classes.cpu().long()
    if labels.shape[0] != classes.shape[0]:
        raise ValueError(f"{labels.shape[0]} prototypes in nearest, {classes.shape[0]} classes")
    own = (labels == classes[:, None]).sum(dim=1)
    return [PruningDecision(prototype=j, class_index=int(classes[j]), k=nearest.k,
                            threshold=threshold, own_class=int(own[j]),
                            sample_indices=tuple(nearest.sample_indices[j].tolist()),
                            labels=tuple(labels[j].tolist()))
            for j in range(classes.shape[0])]
