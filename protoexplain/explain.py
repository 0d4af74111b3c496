"""Case-based explanations of new images: "this part looks like that prototype".

For each image the model's predicted class (its highest logit; for a multi-label model the
highest-scoring finding, and every finding of probability >= 0.5 is listed too) is explained
by its top prototypes, ranked by their contribution to that class's logit (similarity ×
last-layer weight, as the original's ``local_analysis.py``). Each row of the picture shows
where the prototype is found in the image (one panel per localization method) next to the
training image the prototype was projected onto, with its own box. Beside each PNG, the
same local view as the report's, as HTML (:func:`protoexplain.report.write_explanation_pages`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from protoexplain.atomic_io import atomic_write_json
from protoexplain.data.image_io import read_image
from protoexplain.data.labels import class_names_of, is_multi_label
from protoexplain.factory import build_dataset
from protoexplain.pipeline import method_options
from protoexplain.report import write_explanation_pages
from protoexplain.run_dir import LoadedRun
from protoexplain.visualize import (
    BOX_COLOUR,
    caption,
    display_scale,
    enlarge,
    hstack,
    localization_tiles,
    receptive_field_tile,
    to_rgb_uint8,
    vstack,
    write_png,
)
from prototypes import localize


def load_images(paths: list[Path], size: tuple[int, int]) -> torch.Tensor:
    """Read image files (any mode; errors name the file) resized to ``size``: (N, 3, H, W)."""
    images = [read_image(path) for path in paths]
    return torch.stack([F.interpolate(image[None], size=size, mode="bilinear",
                                      align_corners=False, antialias=True)[0].clamp(0, 1)
                        for image in images])


def unique_stems(paths: list[Path]) -> list[str]:
    """A distinct output name per image: its file name without the ending, or, when another
    image given has the same one (``a/bird.png`` and ``b/bird.jpg``; compared ignoring case,
    as some file systems do), that name numbered in the order given (``bird-1``,
    ``bird-2``), skipping numbers another image's name already takes."""
    stems = [Path(path).stem for path in paths]
    counts = Counter(stem.casefold() for stem in stems)
    taken = {stem.casefold() for stem in stems if counts[stem.casefold()] == 1}
    numbers: Counter[str] = Counter()
    names = []
    for stem in stems:
        name = stem
        while counts[stem.casefold()] > 1 and (name == stem or name.casefold() in taken):
            numbers[stem.casefold()] += 1
            name = f"{stem}-{numbers[stem.casefold()]}"
        taken.add(name.casefold())
        names.append(name)
    return names


def class_weights(model: torch.nn.Module) -> torch.Tensor:
    """(K, P) the last-layer weights as the model applies them (XProtoNet's
    ``class_weights()`` masks its own-class layer; ProtoPNet uses its last layer as is)."""
    weights = getattr(model, "class_weights", None)
    return weights() if callable(weights) else model.last_layer.weight


@torch.no_grad()
def _top_prototypes(run: LoadedRun, images: torch.Tensor, top_k: int, multi_label: bool):
    """Class probabilities (sigmoid per class for multi-label models, else softmax), the
    highest-scoring class, and its top prototypes by contribution."""
    output = run.model(images)
    predicted = output.logits.argmax(dim=1)
    weights = class_weights(run.model)[predicted]  # (N, P)
    contributions = output.similarities * weights
    scores, prototypes = contributions.topk(min(top_k, contributions.shape[1]), dim=1)
    probabilities = output.logits.sigmoid() if multi_label else output.logits.softmax(dim=1)
    return probabilities, predicted, prototypes, scores, output.similarities


def explain_images(run: LoadedRun, paths: list[Path], out_dir: Path, *, top_k: int = 3,
                   methods: list[str] | None = None) -> list[dict[str, Any]]:
    """Write one PNG per image into ``out_dir`` plus ``explanations.json``."""
    size = tuple(int(v) for v in run.model.image_size)
    images = load_images(paths, size).to(run.device)
    push_set = build_dataset(run.config, "train", augment=False)
    class_names = class_names_of(push_set)
    multi_label = is_multi_label(push_set)
    probabilities, predicted, prototypes, scores, similarities = _top_prototypes(
        run, images, top_k, multi_label)
    names = methods or list(dict.fromkeys(["upsample", run.config.localization.push_method]))
    options = method_options(run.config, names, run)
    count = prototypes.shape[1]
    pairs_images = images.repeat_interleave(count, dim=0)
    pair_ids = prototypes.reshape(-1)
    found = {name: localize(run.model, pairs_images, pair_ids, method=name, **options[name])
             for name in names}
    records = {record.prototype: record for record in run.records}
    scale = display_scale(size[1])
    stems = unique_stems(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for n, path in enumerate(paths):
        rows, explained = [], []
        for k in range(count):
            pair = n * count + k
            prototype = int(pair_ids[pair])
            tiles = localization_tiles(
                images[n], {name: (found[name].maps[pair], found[name].boxes[pair].tolist())
                            for name in names}, scale=scale)
            record = records.get(prototype)  # None: an imported, unprojected prototype
            prototype_class = (record.class_index if record is not None
                               else int(run.model.prototype_classes[prototype]))
            if record is not None:
                tiles.append(receptive_field_tile(
                    push_set[record.sample_index]["image"], record.receptive_field_box,
                    f"looks like p{prototype} ({class_names[record.class_index]})",
                    scale=scale, colour=BOX_COLOUR))
            rows.append(caption(hstack(tiles), f"prototype {prototype}: similarity "
                                               f"{float(similarities[n, prototype]):.3f}, "
                                               f"contribution {float(scores[n, k]):.3f}"))
            explained.append({
                "prototype": prototype, "class_name": class_names[prototype_class],
                "similarity": float(similarities[n, prototype]),
                "contribution": float(scores[n, k]),
                "boxes": {name: found[name].boxes[pair].tolist() for name in names}})
        label = int(predicted[n])
        header = caption(enlarge(to_rgb_uint8(images[n]), scale),
                         f"{Path(path).name}: {class_names[label]} "
                         f"({float(probabilities[n, label]):.2f})")
        picture = out_dir / f"{stems[n]}_explanation.png"
        write_png(picture, vstack([header, *rows]))
        result = {"image": str(path), "predicted_class": class_names[label],
                  "probability": float(probabilities[n, label]),
                  "picture": str(picture), "prototypes": explained}
        if multi_label:
            result["findings"] = {class_names[k]: float(probabilities[n, k])
                                  for k in range(len(class_names))
                                  if probabilities[n, k] >= 0.5}
        results.append(result)
    localized = {(n, int(pair_ids[n * count + k])): {
        name: (found[name].maps[n * count + k].detach().cpu(),
               found[name].boxes[n * count + k].tolist()) for name in names}
        for n in range(len(paths)) for k in range(count)}
    pages = write_explanation_pages(run, images, [str(path) for path in paths], out_dir,
                                    methods=names, top_k=top_k, localized=localized,
                                    stems=stems)
    for result, (page, local) in zip(results, pages, strict=True):
        explained = local["explanations"][0]
        result.update(page=str(page), logit=explained["logit"], rest=explained["rest"])
        for entry, row in zip(result["prototypes"], explained["prototypes"], strict=True):
            entry["weight"] = row["weight"]
    atomic_write_json(out_dir / "explanations.json", results)
    return results
