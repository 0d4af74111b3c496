"""Localizing projected prototypes in their source images, and the ``projection.json`` records.

Push (:func:`prototypes.push`) finds, for each prototype, the training sample and latent
position it was projected onto. Where the prototype *lives* in that image is a separate,
swappable attribution step (:func:`prototypes.localize`): here it is run for every configured
method, so a person sees the learned-mask localization beside the upsampled one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from prototypes import ProjectionRecord, localize


def stack_images(dataset: Dataset, indices: list[int]) -> torch.Tensor:
    """The images of ``dataset`` at ``indices`` as one (N, C, H, W) tensor."""
    return torch.stack([dataset[i]["image"] for i in indices])


def localize_records(model: torch.nn.Module, dataset: Dataset, records: list[ProjectionRecord],
                     methods: dict[str, dict[str, Any]], *, batch_size: int,
                     device: torch.device, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Run each localization method on every prototype's source image.

    ``methods`` maps a method name to its keyword options. Returns, per method, ``maps``
    (P, H, W) and ``boxes`` (P, 4) on the CPU, in record order.
    """
    images = stack_images(dataset, [record.sample_index for record in records])
    prototype_ids = torch.tensor([record.prototype for record in records])
    results: dict[str, dict[str, Any]] = {}
    for name, options in methods.items():
        maps, boxes = [], []
        starts = range(0, len(records), batch_size)
        for start in tqdm(starts, desc=f"localizing prototypes ({name})", disable=not progress):
            batch = slice(start, start + batch_size)
            found = localize(model, images[batch].to(device), prototype_ids[batch].to(device),
                             method=name, **options)
            maps.append(found.maps.cpu())
            boxes.append(found.boxes.cpu())
        results[name] = {"maps": torch.cat(maps), "boxes": torch.cat(boxes)}
    return results


def projection_json(records: list[ProjectionRecord], localizations: dict[str, dict[str, Any]],
                    class_names: list[str], pictures: list[str] | None = None) -> list[dict]:
    """One JSON-ready record per prototype, with each method's high-activation box."""
    rows = []
    for position, record in enumerate(records):
        row = record.to_dict()
        row["class_name"] = class_names[record.class_index]
        row["localization"] = {
            name: {"box": [int(v) for v in found["boxes"][position].tolist()]}
            for name, found in localizations.items()
        }
        if pictures is not None:
            row["picture"] = pictures[position]
        rows.append(row)
    return rows
