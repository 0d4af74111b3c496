"""The (image, prototype) pairs a localization benchmark scores, and their ground truth.

As Huang et al. (ICCV 2023; hqhQAQ/EvalProtoPNet ``util/eval_interpretability.py``, lines
48-52, 68-71 and 100-106), each prototype is evaluated on the test images of its own class. Learned
masks cost many passes per pair, so ``images_per_class`` may cap that to a deterministic
subset: the data set is walked in one order drawn from ``seed`` and the first images of each
class are kept, so every prototype of a class sees the same images and every method of a
benchmark sees the same pairs.

Multi-label items count for each positive class. Items with labelled boxes (``boxes`` and
``box_labels``, e.g. ChestX-ray14's findings) keep them as padded ``boxes`` (N, L, 4) and
``box_labels`` (N, L) ground truth (:func:`protoexplain.metrics.boxes.pad_boxes`); with
``require_box``, an image counts for a class only when it has a box of that class, so every
pair can be scored against a box (ChestX-ray14 has boxes for few images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from protoexplain.data.collate import collate
from protoexplain.metrics.boxes import pad_boxes

GROUND_TRUTH_KEYS = ("object_mask", "part_masks", "part_keypoints")


@dataclass(frozen=True)
class EvaluationPairs:
    """Images with their ground truth, and the pairs that use them.

    ``images`` (N, C, H, W) in [0, 1]; ``indices`` (N,) their data set indices; ``ground_truth``
    the keys of :data:`GROUND_TRUTH_KEYS` every selected item has (stacked: ``object_mask``
    (N, H, W) bool, ``part_masks`` (N, P, H, W) bool, ``part_keypoints`` (N, P, 3)), and
    for items with labelled boxes ``boxes`` (N, L, 4) and ``box_labels`` (N, L) (padded);
    ``part_names``; ``rows`` (M,) row of each pair's image; ``prototypes`` (M,) its prototype.
    All on the CPU; batches are moved to the device when scored.
    """

    images: Tensor
    indices: Tensor
    ground_truth: dict[str, Tensor]
    part_names: tuple[str, ...]
    rows: Tensor
    prototypes: Tensor

    def __len__(self) -> int:
        return int(self.rows.shape[0])


def _classes_of(label: Any) -> list[int]:
    """Class indices of a label: an int, or the positive entries of a multi-hot tensor."""
    if isinstance(label, Tensor) and label.ndim == 1:
        return torch.nonzero(label > 0).flatten().tolist()
    return [int(label)]


def _counted_classes(item: dict[str, Any], require_box: bool) -> list[int]:
    """The classes an item counts for: its labels, and with ``require_box`` only those that
    also label one of its boxes."""
    classes = _classes_of(item["label"])
    if not require_box:
        return classes
    boxed = set(item["box_labels"].tolist()) if "box_labels" in item else set()
    return [c for c in classes if c in boxed]


def select_class_images(dataset: Dataset, classes: Sequence[int], images_per_class: int | None,
                        *, seed: int = 0, require_box: bool = False,
                        progress: bool = True) -> dict[int, list[int]]:
    """Data set indices of up to ``images_per_class`` images of each class in ``classes``
    (all of them when ``None``), walking the data set in the order drawn from ``seed``.

    Multi-label items (multi-hot ``label``) count for each positive class; with
    ``require_box``, only for the positive classes that label one of the item's boxes. A data
    set with an ``annotation(index)`` method (``label`` and ``box_labels`` without the image,
    e.g. :class:`~protoexplain.data.ChestXray14`) is walked through it, reading no image.
    """
    if images_per_class is not None and images_per_class < 1:
        raise ValueError(f"images_per_prototype must be >= 1 or None, got {images_per_class}")
    wanted = set(int(c) for c in classes)
    chosen: dict[int, list[int]] = {c: [] for c in sorted(wanted)}
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    cap = len(dataset) if images_per_class is None else images_per_class
    annotation = getattr(dataset, "annotation", dataset.__getitem__)
    for index in tqdm(order.tolist(), desc="choosing images", disable=not progress):
        for label in _counted_classes(annotation(index), require_box):
            if label in wanted and len(chosen[label]) < cap:
                chosen[label].append(index)
        if all(len(v) >= cap for v in chosen.values()):
            break
    return {c: sorted(v) for c, v in chosen.items()}


def build_pairs(dataset: Dataset, prototype_classes: Tensor, *,
                prototypes: Sequence[int] | None = None, images_per_class: int | None = 10,
                seed: int = 0, require_box: bool = False,
                progress: bool = True) -> EvaluationPairs:
    """Pair each prototype with images of its class (see :func:`select_class_images`).

    prototype_classes: (P,) class of every prototype of the model; prototypes: which ones to
    evaluate (default all); require_box: only images with a box of the prototype's class.
    Pairs are ordered by prototype, then image index. Ground-truth keys missing from any
    selected item are left out (the metrics that need them are then skipped, not faked);
    labelled boxes become ``boxes`` and ``box_labels`` (see the module docstring).
    """
    prototype_classes = prototype_classes.cpu().long()
    chosen_prototypes = (torch.arange(prototype_classes.shape[0]) if prototypes is None
                         else torch.as_tensor(list(prototypes), dtype=torch.long))
    if chosen_prototypes.numel() == 0:
        raise ValueError("no prototypes to evaluate")
    if chosen_prototypes.min() < 0 or chosen_prototypes.max() >= prototype_classes.shape[0]:
        raise ValueError(f"prototypes must be in [0, {prototype_classes.shape[0]}), got "
                         f"{chosen_prototypes.tolist()}")
    classes = prototype_classes[chosen_prototypes].tolist()
    per_class = select_class_images(dataset, classes, images_per_class, seed=seed,
                                    require_box=require_box, progress=progress)
    indices = sorted({i for images in per_class.values() for i in images})
    if not indices:
        raise ValueError("the data set has no image of the evaluated prototypes' classes"
                         + (" with a box of the class" if require_box else ""))
    row_of = {index: row for row, index in enumerate(indices)}
    rows, pair_prototypes = [], []
    for prototype, label in zip(chosen_prototypes.tolist(), classes, strict=True):
        rows += [row_of[i] for i in per_class[label]]
        pair_prototypes += [prototype] * len(per_class[label])
    batch = collate([dataset[i] for i in indices])
    ground_truth = {key: batch[key] for key in GROUND_TRUTH_KEYS
                    if isinstance(batch.get(key), Tensor)}
    if "box_labels" in batch:
        ground_truth["boxes"], ground_truth["box_labels"] = pad_boxes(
            list(batch["boxes"]), list(batch["box_labels"]))
    return EvaluationPairs(
        images=batch["image"], indices=torch.tensor(indices), ground_truth=ground_truth,
        part_names=tuple(batch.get("part_names", ())), rows=torch.tensor(rows, dtype=torch.long),
        prototypes=torch.tensor(pair_prototypes, dtype=torch.long))
