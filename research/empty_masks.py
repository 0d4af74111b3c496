"""Failure census of localization maps on one trained run: empty (constant) maps, and pairs
whose prototype score is not positive.

An empty learned mask gets the whole image as its box. For the pairs with empty maps the
script also reports the prototype's score on the blurred image (HDM's and MDM's baseline,
Gaussian sigma 10 px) as a share of the score on the image: a high share would mean the
baseline already keeps the score, so an empty mask is the honest answer; a low share means
the evidence is real and the optimisation gave up on it. Pairs whose score is not positive
(an absent XProtoNet prototype has a negative cosine) are left out of fidelity and
deletion/insertion by the benchmark; their share is reported here.

    python research/empty_masks.py runs/seeds/synthetic_coarse_protopnet_seed0 \
        --methods hdm,mdm --images-per-prototype 2 --out research/results/empty_masks_coarse_seed0

Prints a Markdown table and writes OUT.json and OUT.md. Results: docs/known-failures.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # study_io

from study_io import add_images_per_prototype, load_run_pairs, publish_report

from hdm.perturbation import gaussian_blur
from protoexplain.metrics.scores import PairScores
from protoexplain.pipeline import method_options, metric_settings
from prototypes import localize

BLUR_SIGMA = 10.0
"""Sigma in pixels of HDM's and MDM's default blurred baseline."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--methods", default="hdm,mdm")
    add_images_per_prototype(parser, default=2)
    parser.add_argument("--out", type=Path, required=True, help="output path without extension")
    args = parser.parse_args(argv)

    study = load_run_pairs(args.run_dir, args.images_per_prototype)
    run, model, images, ids = study.run, study.model, study.images, study.ids
    settings = metric_settings(run.config)
    scores = PairScores(model, images, ids, settings.score)
    blur_share = scores.of_images(gaussian_blur(images, BLUR_SIGMA)) / scores.reference
    results = {}
    for method, options in method_options(run.config, args.methods.split(",")).items():
        maps = localize(model, images, ids, method, **options).maps.flatten(1)
        empty = maps.amax(dim=1) - maps.amin(dim=1) <= 0
        shares = blur_share[empty]
        results[method] = {
            "pairs": float(len(ids)),
            "empty_maps": float(empty.sum()),
            "non_positive_scores": float((scores.reference <= 0).sum()),
            "blur_share_of_empty_min": float(shares.min()) if shares.numel() else None,
            "blur_share_of_empty_max": float(shares.max()) if shares.numel() else None,
            "empty_map_prototypes": sorted(set(ids[empty].tolist())),
        }
    lines = [
        f"Empty maps and non-positive scores, {args.run_dir}, "
        f"{args.images_per_prototype or 'all'} images per prototype\n",
        "| method | pairs | empty maps | pairs with score <= 0 | blurred/original score "
        "of the empty ones |",
        "|---|---:|---:|---:|---|",
    ]
    for method, row in results.items():
        span = (
            f"{row['blur_share_of_empty_min']:.3f} to {row['blur_share_of_empty_max']:.3f}"
            if row["empty_maps"]
            else "n/a"
        )
        lines.append(
            f"| {method} | {row['pairs']:.0f} | {row['empty_maps']:.0f} | "
            f"{row['non_positive_scores']:.0f} | {span} |"
        )
    text = "\n".join(lines) + "\n"
    publish_report(args.out, text, {"run": str(args.run_dir), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
