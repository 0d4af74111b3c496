"""``protoexplain global-analysis``: each prototype's k nearest training and test patches,
with where the prototype is found in each image, stored as ``global_analysis.json``.

Source: cfchen-duke/ProtoPNet ``global_analysis.py`` and ``find_nearest.py``: per prototype,
the k images (one patch each) whose closest latent patch is nearest to it, over the
unaugmented training set and over the test set, all classes. The search is
:func:`prototypes.nearest_patches` (batched, on the model's device). The original draws each
neighbour's receptive field and upsampled activation; here every neighbour gets its
receptive-field box and the high-activation box of a localization method (the run's
``localization.push_method`` by default, so the learned-mask localization the run's
projection shows), computed in batches of pairs.

``global_analysis.json``::

    {"k": 5, "method": "hdm", "splits": ["train", "test"],
     "prototypes": [{"prototype": 0, "class_index": 0, "class_name": "...",
                     "train": [{"rank": 0, "sample_index": 12, "label": 0,
                                "class_name": "...", "distance": 0.01, "similarity": 4.6,
                                "latent_position": [3, 4],
                                "receptive_field_box": [y0, y1, x0, x1],
                                "box": [y0, y1, x0, x1]}, ...],
                     "test": [...]}, ...]}

``label`` is -1 (and ``class_name`` null) for multi-label data. Boxes are end-exclusive
pixel boxes of the data set's images.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from protoexplain.atomic_io import atomic_write_json
from protoexplain.data.labels import class_names_of
from protoexplain.factory import build_dataset, make_loader
from protoexplain.pipeline import method_options
from protoexplain.projection import stack_images
from protoexplain.run_dir import LoadedRun
from prototypes import NearestPatches, localize, nearest_patches
from prototypes.receptive_field import receptive_field_boxes

log = logging.getLogger("protoexplain")

__all__ = ["GLOBAL_ANALYSIS", "global_analysis"]

GLOBAL_ANALYSIS = "global_analysis.json"


def _split_rows(run: LoadedRun, dataset, nearest: NearestPatches, method: str,
                class_names: list[str], progress: bool) -> list[list[dict[str, Any]]]:
    """Per prototype, its neighbours in ``dataset`` as JSON rows (localized in batches)."""
    model, device = run.model, run.device
    count, k = nearest.sample_indices.shape
    samples = nearest.sample_indices.cpu().reshape(-1)
    prototypes = torch.arange(count).repeat_interleave(k)
    options = method_options(run.config, [method], run)[method]
    batch_size = run.config.data.eval_batch_size
    boxes = []
    for start in tqdm(range(0, samples.numel(), batch_size), desc=f"localizing ({method})",
                      disable=not progress):
        chunk = slice(start, start + batch_size)
        images = stack_images(dataset, samples[chunk].tolist()).to(device)
        found = localize(model, images, prototypes[chunk].to(device), method=method, **options)
        boxes.append(found.boxes.cpu())
    boxes = torch.cat(boxes).view(count, k, 4)
    size = tuple(dataset[int(samples[0])]["image"].shape[-2:])
    positions = nearest.positions.cpu()
    fields = receptive_field_boxes(model.receptive_field, positions[..., 0], positions[..., 1],
                                   size)
    with torch.no_grad():
        if hasattr(model, "similarity"):
            similarities = model.similarity(nearest.distances).cpu()
        else:  # XProtoNet: distance = 1 - cosine similarity
            similarities = (1 - nearest.distances).cpu()
    rows = []
    for j in range(count):
        rows.append([{"rank": r, "sample_index": int(nearest.sample_indices[j, r]),
                      "label": int(nearest.labels[j, r]),
                      "class_name": (class_names[int(nearest.labels[j, r])]
                                     if int(nearest.labels[j, r]) >= 0 else None),
                      "distance": float(nearest.distances[j, r]),
                      "similarity": float(similarities[j, r]),
                      "latent_position": positions[j, r].tolist(),
                      "receptive_field_box": fields[j, r].tolist(),
                      "box": boxes[j, r].tolist()} for r in range(k)])
    return rows


def global_analysis(run: LoadedRun, *, k: int = 5, method: str | None = None,
                    splits: tuple[str, ...] = ("train", "test"), write: bool = True,
                    progress: bool = True) -> dict[str, Any]:
    """Find and localize each prototype's ``k`` nearest patches in each split; write
    ``RUN_DIR/global_analysis.json`` when ``write`` and return its content."""
    from protoexplain.run_lock import run_lock

    if k < 1:
        raise ValueError(f"global analysis: k must be >= 1, got {k}")
    method = method or run.config.localization.push_method
    config = run.config
    result: dict[str, Any] = {"k": k, "method": method, "splits": list(splits)}
    per_split = {}
    class_names: list[str] = []
    for split in splits:
        dataset = build_dataset(config, split, augment=False)
        class_names = class_names_of(dataset)
        loader = make_loader(dataset, config.data.eval_batch_size, config)
        nearest = nearest_patches(run.model, loader, k, progress=progress)
        per_split[split] = _split_rows(run, dataset, nearest, method, class_names, progress)
        log.info("global analysis: %d nearest %s patches of %d prototypes", nearest.k, split,
                 nearest.sample_indices.shape[0])
    classes = run.model.prototype_classes.tolist()
    result["prototypes"] = [
        {"prototype": j, "class_index": c, "class_name": class_names[c] if class_names else None,
         **{split: per_split[split][j] for split in splits}}
        for j, c in enumerate(classes)]
    if write:
        with run_lock(run.path, "protoexplain global-analysis"):
            atomic_write_json(Path(run.path) / GLOBAL_ANALYSIS, result)
    return result
