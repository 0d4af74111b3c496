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

from protoexplain.distributed import map_batches
from prototypes import ProjectionRecord, localize


def stack_images(dataset: Dataset, indices: list[int]) -> torch.Tensor:
    """The images of ``dataset`` at ``indices`` as one (N, C, H, W) tensor."""
    return torch.stack([dataset[i]["image"] for i in indices])


def localize_records(model: torch.nn.Module, dataset: Dataset, records: list[ProjectionRecord],
                     methods: dict[str, dict[str, Any]], *, batch_size: int,
                     device: torch.device, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Run each localization method on every prototype's source image.

    ``methods`` maps a method name to its keyword options. Returns, per method, ``maps``
    (P, H, W) and ``boxes`` (P, 4) on the CPU, in record order. Under torch.distributed the
    batches are shared among the processes (:func:`protoexplain.distributed.map_batches`) and
    every process gets all results.
    """
    images = stack_images(dataset, [record.sample_index for record in records])
    prototype_ids = torch.tensor([record.prototype for record in records])
    results: dict[str, dict[str, Any]] = {}
    for name, options in methods.items():

        def work(batch: int, name: str = name, options: dict = options
                 ) -> tuple[torch.Tensor, torch.Tensor]:
            rows = slice(batch * batch_size, (batch + 1) * batch_size)
            found = localize(model, images[rows].to(device), prototype_ids[rows].to(device),
                             method=name, **options)
            return found.maps.cpu(), found.boxes.cpu()

        found = map_batches(-(-len(records) // batch_size), work,
                            desc=f"localizing prototypes ({name})", progress=progress)
        results[name] = {"maps": torch.cat([maps for maps, _ in found]),
                         "boxes": torch.cat([boxes for _, boxes in found])}
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
