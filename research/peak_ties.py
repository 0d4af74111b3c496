"""How often a localization map has several maximal pixels, and what that does to the
pointing game.

The pointing game (Zhang et al. 2016; TorchRay) and Huang et al.'s consistency take the
map's maximum as its point: ``argmax``, i.e. the first maximal pixel in row-major order.
An upsampled similarity map has one maximum, but a learned mask whose values are clamped to
[0, 1] can have a plateau of maximal pixels, and then the first one (the plateau's top-left
corner) stands for the whole map. This script measures, for each method on one trained
run, the share of maps with such ties and the pointing game under two tie rules: ``first``
(the protocol) and ``plateau_centre`` (the maximal pixel nearest the centroid of all maximal
pixels). The region is the pair's finding boxes on data sets with labelled boxes, else the
object mask.

    python research/peak_ties.py runs/seeds/synthetic_xprotonet_seed0 \
        --methods upsample,hdm,mdm --images-per-prototype 6 \
        --out research/results/peak_ties_xprotonet_seed0

Prints a Markdown table and writes OUT.json and OUT.md. Results: docs/known-failures.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # study_io

import torch
from study_io import add_images_per_prototype, load_run_pairs, publish_report
from torch import Tensor

from hdm.metrics import pointing_game
from protoexplain.metrics.boxes import finding_regions
from protoexplain.pipeline import method_options
from prototypes import localize


def plateau_centre_points(maps: Tensor) -> Tensor:
    """(B, H, W) one-hot maps of the maximal pixel nearest the centroid of the maximal
    pixels (the argmax itself when the maximum is unique)."""
    batch, height, width = maps.shape
    flat = maps.flatten(1)
    top = flat == flat.amax(dim=1, keepdim=True)
    rows = torch.arange(height, device=maps.device).repeat_interleave(width).float()
    columns = torch.arange(width, device=maps.device).repeat(height).float()
    weights = top.float()
    centre_y = (weights * rows).sum(dim=1) / weights.sum(dim=1)
    centre_x = (weights * columns).sum(dim=1) / weights.sum(dim=1)
    distance = (rows - centre_y[:, None]) ** 2 + (columns - centre_x[:, None]) ** 2
    chosen = distance.masked_fill(~top, float("inf")).argmin(dim=1)
    points = torch.zeros_like(flat)
    points[torch.arange(batch, device=maps.device), chosen] = 1.0
    return points.view_as(maps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--methods", default="upsample,hdm")
    add_images_per_prototype(parser, default=6)
    parser.add_argument("--out", type=Path, required=True, help="output path without extension")
    args = parser.parse_args(argv)

    study = load_run_pairs(args.run_dir, args.images_per_prototype)
    run, model, images, ids, pairs = study.run, study.model, study.images, study.ids, study.pairs
    classes, boxed = study.classes, study.boxed
    truth = {key: value[pairs.rows].to(run.device) for key, value in pairs.ground_truth.items()}
    if boxed:
        regions, _ = finding_regions(
            truth["boxes"], truth["box_labels"], classes[ids], tuple(images.shape[-2:])
        )
    else:
        regions = truth["object_mask"]
    tolerance = 15 * images.shape[-1] / 224  # TorchRay's 15 px at 224 px
    options = method_options(run.config, args.methods.split(","))
    results = {}
    for method, kwargs in options.items():
        maps = localize(model, images, ids, method, **kwargs).maps
        flat = maps.flatten(1)
        ties = (flat == flat.amax(dim=1, keepdim=True)).sum(dim=1)
        results[method] = {
            "maps_with_tied_maxima": float((ties > 1).float().mean()),
            "pointing_first": float(pointing_game(maps, regions, tolerance=tolerance).nanmean()),
            "pointing_plateau_centre": float(
                pointing_game(plateau_centre_points(maps), regions, tolerance=tolerance).nanmean()
            ),
            "pairs": float(len(ids)),
        }
    region = "finding boxes" if boxed else "object mask"
    lines = [
        f"Tied maxima and the pointing game ({region}), {args.run_dir}, "
        f"{args.images_per_prototype or 'all'} images per prototype\n",
        "| method | maps with tied maxima | pointing, first maximum | "
        "pointing, plateau centre | pairs |",
        "|---|---:|---:|---:|---:|",
    ]
    for method, row in results.items():
        lines.append(
            f"| {method} | {row['maps_with_tied_maxima']:.3f} | {row['pointing_first']:.3f} | "
            f"{row['pointing_plateau_centre']:.3f} | {row['pairs']:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    publish_report(args.out, text, {"run": str(args.run_dir), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
