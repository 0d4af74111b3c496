"""Prototype projection ("push"): replace each prototype by its nearest training patch.

Source: Chen et al., NeurIPS 2019, Sec. 2.2 ("projection of prototypes"); cfchen-duke/ProtoPNet
``push.py`` (``push_prototypes``, ``update_prototypes_on_batch``). As there, the search runs
over an unaugmented training loader, class-specifically by default, keeps a running minimum
across batches (an earlier batch wins ties; within a batch the first minimum in
(image, row, column) order wins) and finally overwrites the prototype vectors.

Across processes (torch.distributed initialised with more than one process), each process
searches its part of the push set and :func:`nearest_across_processes` agrees on the global
nearest patch with the single-process tie order, so that the projection is the one a single
process finds when each process's batches are batches of the single-process loader.

Unlike the original, this function does not draw or save anything and does not localize the
prototype: where it lives in its source image is a separate step
(:func:`prototypes.localize`), so any localization method can be applied to the records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from hdm.hooks import evaluation_mode
from prototypes.model import ProtoPNet
from prototypes.receptive_field import receptive_field_boxes

__all__ = ["ProjectionRecord", "nearest_across_processes", "push"]


@dataclass(frozen=True)
class ProjectionRecord:
    """Where prototype ``prototype`` (of class ``class_index``) was projected.

    ``sample_index``: the source sample's index in the push data set (``batch['index']``);
    ``latent_position``: (h, w) of the patch in the latent map; ``distance``: its squared L2
    distance to the prototype *before* the push (the nearest distance found, as the original's
    ``global_min_proto_dist``); ``similarity``: that distance through the model's similarity;
    ``receptive_field_box``: (y0, y1, x0, x1), end-exclusive, the patch's receptive field in
    the source image.
    """

    prototype: int
    class_index: int
    sample_index: int
    latent_position: tuple[int, int]
    distance: float
    similarity: float
    receptive_field_box: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        row = asdict(self)
        row["latent_position"] = list(self.latent_position)
        row["receptive_field_box"] = list(self.receptive_field_box)
        return row

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> ProjectionRecord:
        """Inverse of :meth:`to_dict`; other keys in ``row`` are ignored."""
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in row]
        if missing:
            raise ValueError(f"projection record {row} lacks keys {missing}")
        return cls(prototype=int(row["prototype"]), class_index=int(row["class_index"]),
                   sample_index=int(row["sample_index"]),
                   latent_position=tuple(int(v) for v in row["latent_position"]),
                   distance=float(row["distance"]), similarity=float(row["similarity"]),
                   receptive_field_box=tuple(int(v) for v in row["receptive_field_box"]))


def push(model: ProtoPNet, loader: Iterable[dict[str, Any]], *, class_specific: bool = True,
         progress: bool = False) -> list[ProjectionRecord]:
    """Project every prototype onto its nearest latent patch and return one record each.

    Args:
        model: the ProtoPNet; its ``prototype_vectors`` are overwritten in place.
        loader: the *unaugmented* training set, yielding dicts with ``image`` (B, 3, H, W) in
            [0, 1], ``label`` (B,) integer classes and ``index`` (B,) sample indices; all
            images the same size.
        class_specific: search only images of the prototype's own class (the original's
            default and ``main.py`` setting); otherwise every image.
        progress: show a tqdm bar.

    Raises:
        ValueError: when a prototype's class has no image in the loader, or batches lack
            ``index`` or have non-integer labels.
    """
    device = model.prototype_vectors.device
    num_prototypes = model.num_prototypes
    own_class = model.prototype_class_identity.t().bool()  # (K, P): own_class[k, j]
    best_distance = torch.full((num_prototypes,), float("inf"), device=device)
    best_vector = torch.zeros(num_prototypes, model.prototype_dim, device=device)
    best_sample = torch.full((num_prototypes,), -1, dtype=torch.long, device=device)
    best_h = torch.zeros(num_prototypes, dtype=torch.long, device=device)
    best_w = torch.zeros(num_prototypes, dtype=torch.long, device=device)
    image_size = None
    with evaluation_mode(model):
        for batch in tqdm(loader, desc="push", disable=not progress, leave=False):
            if "index" not in batch:
                raise ValueError("push needs batch['index'] (each sample's index in the data set)")
            images = batch["image"].to(device)
            labels = batch["label"].to(device)
            if labels.ndim != 1 or labels.dtype.is_floating_point:
                raise ValueError("push needs integer class labels of shape (B,), got "
                                 f"{labels.dtype} {tuple(labels.shape)}")
            if image_size is None:
                image_size = tuple(images.shape[-2:])
            elif tuple(images.shape[-2:]) != image_size:
                raise ValueError(f"push: images of different sizes ({image_size} and "
                                 f"{tuple(images.shape[-2:])}) in one loader")
            latent = model.latent(images)  # (B, D, h, w)
            distances = model.distances(latent)  # (B, P, h, w)
            if class_specific:
                allowed = own_class[labels]  # (B, P)
                distances = distances.masked_fill(~allowed[:, :, None, None], float("inf"))
            _, _, height, width = distances.shape
            flat = distances.transpose(0, 1).reshape(num_prototypes, -1)  # (P, B*h*w)
            position = flat.argmin(dim=1)
            batch_min = flat.gather(1, position[:, None])[:, 0]
            image_in_batch = position // (height * width)
            h = position % (height * width) // width
            w = position % width
            better = batch_min < best_distance
            best_distance = torch.where(better, batch_min, best_distance)
            best_vector = torch.where(better[:, None], latent[image_in_batch, :, h, w],
                                      best_vector)
            best_sample = torch.where(better, batch["index"].to(device)[image_in_batch],
                                      best_sample)
            best_h = torch.where(better, h, best_h)
            best_w = torch.where(better, w, best_w)

        positions = torch.stack([best_h, best_w], dim=1)
        best_distance, best_sample, positions, best_vector, image_size = \
            nearest_across_processes(best_distance, best_sample, positions, best_vector,
                                     image_size)
        best_h, best_w = positions.unbind(dim=1)
        unfound = torch.isinf(best_distance)
        if unfound.any():
            classes = sorted(set(model.prototype_classes[unfound].tolist()))
            raise ValueError(f"push: no image of class(es) {classes} in the loader, so their "
                             "prototypes cannot be projected (the loader must cover every "
                             "class of the training set)")
        model.prototype_vectors.copy_(best_vector.view_as(model.prototype_vectors))
        similarity = model.similarity(best_distance)

    boxes = receptive_field_boxes(model.receptive_field, best_h, best_w, image_size).tolist()
    columns = zip(range(num_prototypes), model.prototype_classes.tolist(), best_sample.tolist(),
                  best_h.tolist(), best_w.tolist(), best_distance.tolist(),
                  similarity.tolist(), boxes, strict=True)
    return [ProjectionRecord(prototype=j, class_index=k, sample_index=s, latent_position=(y, x),
                             distance=d, similarity=sim, receptive_field_box=tuple(box))
            for j, k, s, y, x, d, sim, box in columns]


def nearest_across_processes(distance: Tensor, sample: Tensor, position: Tensor, vector: Tensor,
                             image_size: tuple[int, ...] | None
                             ) -> tuple[Tensor, Tensor, Tensor, Tensor, tuple[int, ...] | None]:
    """Each prototype's nearest candidate over all processes, when torch.distributed is
    initialised with more than one process (otherwise the arguments come back unchanged).

    Every process passes its own best candidate per prototype: ``distance`` (P,) float,
    ``sample`` (P,) long data set index, ``position`` (P, 2) long latent (row, column),
    ``vector`` (P, D), and the ``image_size`` its batches had (None when it saw none). The
    smallest distance wins; equal distances go to the lowest sample index, then the first
    position in row-major order: the candidate one process keeps when it searches the whole
    set in data set order (an earlier batch wins ties, and within a batch the first
    minimum in (image, row, column) order). Returns the winners, the same on every process,
    and the image size the processes saw.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return distance, sample, position, vector, image_size
    world = dist.get_world_size()

    def gathered(tensor: Tensor) -> Tensor:
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.stack(parts)  # (W, ...)

    distances, samples = gathered(distance), gathered(sample)
    positions, vectors = gathered(position), gathered(vector)
    best = torch.zeros_like(sample)  # (P,) the winning process of each prototype
    every = torch.arange(len(sample), device=sample.device)
    for other in range(1, world):
        key_best = (distances[best, every], samples[best, every],
                    positions[best, every, 0], positions[best, every, 1])
        key_other = (distances[other], samples[other], positions[other, :, 0],
                     positions[other, :, 1])
        better = torch.zeros_like(key_best[0], dtype=torch.bool)
        equal = torch.ones_like(better)
        for mine, theirs in zip(key_best, key_other, strict=True):
            better |= equal & (theirs < mine)
            equal &= theirs == mine
        best = torch.where(better, other, best)
    sizes = [size for size in _all_gather_objects(image_size, world) if size is not None]
    return (distances[best, every], samples[best, every], positions[best, every],
            vectors[best, every], sizes[0] if sizes else None)


def _all_gather_objects(value: Any, world: int) -> list[Any]:
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, value)
    return gathered
