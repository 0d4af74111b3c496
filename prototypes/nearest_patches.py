"""The k nearest image patches of every prototype: the search behind global analysis and
pruning.

Source: cfchen-duke/ProtoPNet ``find_nearest.py`` (``find_k_nearest_patches_to_prototypes``):
for each image, the closest latent patch to each prototype is that image's candidate (one per
image, so an image appears at most once per prototype); the k images whose candidates are
closest are the prototype's k nearest patches. The original keeps a heap per prototype and
walks images one by one; here whole batches are scored at once on the model's device and a
running top-k of shape (P, k) is merged with each batch's (P, B) candidates, so the result
does not depend on the batch size. Ties are broken by the lower data set index (then, within
an image, by the first position in row-major order).

The distance is the model's own: the squared L2 distance of :class:`~prototypes.ProtoPNet`
(as :func:`prototypes.push`), or ``1 - cosine similarity`` of :class:`~prototypes.XProtoNet`,
whose candidate in an image is one occurrence-weighted vector, located at the peak of the
prototype's occurrence map (as :func:`prototypes.push_xprotonet`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from hdm.hooks import evaluation_mode

__all__ = ["NearestPatches", "nearest_patches", "patch_candidates"]


@dataclass
class NearestPatches:
    """Each prototype's k nearest images and the patch in each (P prototypes, k neighbours).

    ``sample_indices`` (P, k) long: data set index of each neighbour image, nearest first;
    ``positions`` (P, k, 2) long: latent (row, column) of the nearest patch in that image;
    ``distances`` (P, k) float: that patch's distance to the prototype (the model's own
    distance); ``labels`` (P, k) long: the image's class (-1 for multi-label images).
    When the batches hold fewer than k images, k is their number.
    """

    sample_indices: Tensor
    positions: Tensor
    distances: Tensor
    labels: Tensor

    @property
    def k(self) -> int:
        """Neighbours per prototype."""
        return int(self.sample_indices.shape[1])

    def to(self, device: torch.device | str) -> NearestPatches:
        """The same result with every tensor on ``device``."""
        return NearestPatches(*(t.to(device) for t in (self.sample_indices, self.positions,
                                                         self.distances, self.labels)))


def _unpack(batch: Any) -> tuple[Tensor, Tensor, Tensor]:
    if isinstance(batch, Mapping):
        if "index" not in batch:
            raise ValueError("nearest_patches needs batch['index'] (each sample's index in the "
                             "data set)")
        return batch["image"], batch["label"], batch["index"]
    images, labels, indices = batch
    return images, labels, indices


def patch_candidates(model: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """Per image, each prototype's nearest patch: distances (B, P) and positions (B, P, 2).

    ProtoPNet: the minimum of :meth:`~prototypes.ProtoPNet.distances` over latent positions
    (first in row-major order on ties). XProtoNet: ``1 - similarity`` at the occurrence map's
    peak. Gradients follow the caller's mode.
    """
    if hasattr(model, "distances") and hasattr(model, "latent"):
        distances = model.distances(model.latent(images))  # (B, P, h, w)
        width = distances.shape[-1]
        best, flat = distances.flatten(2).min(dim=2)
    elif hasattr(model, "occurrence_module"):
        output = model(images)
        maps = output.similarity_maps  # occurrence maps (B, P, h, w)
        width = maps.shape[-1]
        flat = maps.flatten(2).argmax(dim=2)
        best = 1.0 - output.similarities
    else:
        raise TypeError(f"nearest_patches: {type(model).__name__} is neither a ProtoPNet "
                        "(latent, distances) nor an XProtoNet")
    return best, torch.stack([flat // width, flat % width], dim=-1)


def nearest_patches(model: nn.Module, batches: Iterable[Any], k: int, *,
                    progress: bool = True) -> NearestPatches:
    """The k nearest patches (one per image) of every prototype over ``batches``.

    Args:
        model: a :class:`~prototypes.ProtoPNet` or :class:`~prototypes.XProtoNet`; run in
            eval mode without gradients on its own device (its mode is restored).
        batches: iterable of ``(images (B, C, H, W) in [0, 1], labels (B,) or (B, K)
            multi-hot, indices (B,))`` tuples, or of dicts with ``image``, ``label`` and
            ``index`` (a data loader of :mod:`protoexplain.data` sets).
        k: neighbours per prototype (>= 1).
        progress: show a tqdm bar.

    Returns:
        :class:`NearestPatches` on the model's device, nearest first; equal distances are
        ordered by data set index.
    """
    if k < 1:
        raise ValueError(f"nearest_patches: k must be >= 1, got {k}")
    device = model.prototype_vectors.device
    num_prototypes = model.prototype_vectors.shape[0]
    best_distance = torch.empty(num_prototypes, 0, device=device)
    best_index = torch.empty(num_prototypes, 0, dtype=torch.long, device=device)
    best_position = torch.empty(num_prototypes, 0, 2, dtype=torch.long, device=device)
    best_label = torch.empty(num_prototypes, 0, dtype=torch.long, device=device)
    with evaluation_mode(model):
        for batch in tqdm(batches, desc="nearest patches", disable=not progress, leave=False):
            images, labels, indices = _unpack(batch)
            images = images.to(device)
            indices = torch.as_tensor(indices, device=device).long().view(-1)
            labels = torch.as_tensor(labels, device=device)
            if labels.ndim == 2 or labels.dtype.is_floating_point:
                labels = torch.full_like(indices, -1)  # multi-label: no single class
            distances, positions = patch_candidates(model, images)  # (B, P), (B, P, 2)
            distance = torch.cat([best_distance, distances.t().float()], dim=1)
            index = torch.cat([best_index, indices[None].expand(num_prototypes, -1)], dim=1)
            position = torch.cat([best_position, positions.transpose(0, 1)], dim=1)
            label = torch.cat([best_label, labels.long()[None].expand(num_prototypes, -1)],
                              dim=1)
            # Order by (distance, index): sort by index, then stably by distance.
            by_index = index.argsort(dim=1, stable=True)
            by_distance = distance.gather(1, by_index).argsort(dim=1, stable=True)
            order = by_index.gather(1, by_distance)[:, :min(k, distance.shape[1])]
            best_distance = distance.gather(1, order)
            best_index = index.gather(1, order)
            best_position = position.gather(1, order[..., None].expand(-1, -1, 2))
            best_label = label.gather(1, order)
    return NearestPatches(sample_indices=best_index, positions=best_position,
                          distances=best_distance, labels=best_label)
