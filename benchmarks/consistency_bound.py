"""How consistent can a map be whose peak stays on a part the prototype relies on? An upper
bound on Huang's consistency for such maps, beside upsampling's consistency on the same pairs.

For every (test image, prototype) pair the parts are scored by occlusion, as for
``responsible_part_hit`` (:func:`protoexplain.metrics.prototype_parts.score_pair_parts`: the
drop of the prototype's similarity when the part is filled with the data-set mean). The parts
the prototype **relies on** in that image are the visible ones whose drop is above zero and
at least RATIO times the largest drop. A map that follows the model has its peak on one of
them, and its Huang box then hits the parts whose keypoints lie around that part's keypoint.
The union of those hits over every relied-on part contains the hits of any such map, so
Huang's consistency of the union bounds the consistency of every map whose peak lies on a
relied-on part's keypoint, whichever of them it picks in each image. With RATIO 1 the
relied-on part is the most relied-on one, and the bound is the seed tables'
``oracle_consistency``.

Each bound is compared with upsampling by the rule of issue 4's bar
(:func:`protoexplain.benchmark.compare_across_runs`: gain > seed spread and every seed's gain
> 0). Where even the bound does not beat upsampling, no map that follows the parts the model
relies on can.

    PYTHONPATH=. python benchmarks/consistency_bound.py \\
        runs/seeds/fashion_protopnet_seed{0,1,2} --ratios 1,0.75,0.5,0.25 \\
        --images-per-prototype 3 --out benchmarks/results/consistency_bound_fashion

Prints a Markdown table and writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from study_io import add_images_per_prototype, load_run_pairs, publish_report
from torch import Tensor

from protoexplain.benchmark import compare_across_runs
from protoexplain.metrics.localization import evaluate_localization
from protoexplain.metrics.parts import keypoint_hits, prototype_consistency, scaled_half_sizes
from protoexplain.metrics.prototype_parts import responsible_parts, score_pair_parts
from protoexplain.pipeline import metric_settings


def relied_on_parts(scores: Tensor, visible: Tensor, ratio: float) -> Tensor:
    """bool (M, N): the visible parts whose occlusion score is above zero and at least
    ``ratio`` times the pair's largest score over visible parts."""
    best = scores.masked_fill(~visible, float("-inf")).max(dim=1, keepdim=True).values
    return visible & (scores > 0) & (scores >= ratio * best)


def union_of_hits(relied: Tensor, keypoints: Tensor, half_size: tuple[float, float]) -> Tensor:
    """bool (M, N): the parts hit by the Huang box centred on the keypoint of any relied-on
    part of the pair. keypoints: (M, N, 3) as x, y, visible."""
    pairs, parts = relied.shape
    centres = keypoints[..., :2].flip(-1).reshape(pairs * parts, 2)  # (row y, column x)
    around = keypoint_hits(centres, keypoints.repeat_interleave(parts, dim=0), half_size)
    return (around.view(pairs, parts, parts) & relied[:, :, None]).any(dim=1)


def bound_run(run_dir: Path, ratios: list[float], images_per_prototype: int | None,
              batch_size: int) -> dict[str, dict[str, float]]:
    """Upsampling's consistency and the bound for each ratio on one run's pairs:
    ``{row: {"consistency": value}}`` (``upsample``, ``oracle_consistency (model)`` from the
    benchmark code as a check, and ``bound, ratio R``)."""
    loaded = load_run_pairs(run_dir, images_per_prototype)
    pairs, device = loaded.pairs, loaded.run.device
    if "part_keypoints" not in pairs.ground_truth:
        raise SystemExit(f"{run_dir}: its data set has no part keypoints to be consistent on")
    settings = metric_settings(loaded.run.config, stability=False, sanity=False,
                               deletion_insertion=False)
    scores, visible = score_pair_parts(loaded.model, pairs, similarity_at=settings.similarity_at,
                                       fill=settings.fill, batch_size=batch_size,
                                       device=device, progress=False)
    upsample = evaluate_localization(loaded.model, pairs, "upsample",
                                     responsible_parts=responsible_parts(scores, visible),
                                     settings=settings, batch_size=batch_size, device=device,
                                     seed=loaded.run.config.seed, progress=False)
    keypoints = pairs.ground_truth["part_keypoints"][pairs.rows].double()
    half_size = settings.half_size or scaled_half_sizes(tuple(pairs.images.shape[-2:]))
    groups = torch.unique(pairs.prototypes, return_inverse=True)[1]
    rows = {"upsample": {"consistency": upsample["consistency"]},
            "oracle_consistency (model)": {"consistency": upsample["oracle_consistency"]}}
    for ratio in ratios:
        hits = union_of_hits(relied_on_parts(scores, visible, ratio), keypoints, half_size)
        consistent = prototype_consistency(hits, keypoints[..., 2] > 0, groups,
                                           int(groups.max()) + 1,
                                           settings.consistency_threshold)
        rows[f"bound, ratio {ratio:g}"] = {"consistency": float(consistent.double().mean())}
    return rows


def table(per_run: dict[str, dict[str, dict[str, float]]],
          comparisons: dict[str, dict[str, float]]) -> str:
    names = list(next(iter(per_run.values())))
    lines = ["| row | " + " | ".join(Path(run).name for run in per_run)
             + " | mean ± std | gain over upsample | seed spread | worst seed's gain | beats |",
             "|---" * (len(per_run) + 6) + "|"]
    for name in names:
        values = torch.tensor([rows[name]["consistency"] for rows in per_run.values()],
                              dtype=torch.float64)
        spread = f"{values.std():.3f}" if len(values) > 1 else "n/a"
        cells = [f"{value:.3f}" for value in values.tolist()]
        compared = comparisons.get(name)
        beats = {1.0: "yes", 0.0: "no"}.get(compared["beats"], "n/a") if compared else ""
        tail = ("| | | | |" if compared is None else
                f"| {compared['gain']:+.3f} | {compared['spread']:.3f} | "
                f"{compared['worst_gain']:+.3f} | {beats} |")
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {values.mean():.3f} ± {spread} {tail}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="trained run directories (seeds)")
    parser.add_argument("--ratios", default="1,0.75,0.5,0.25",
                        help="comma-separated shares of the largest occlusion score in (0, 1]")
    add_images_per_prototype(parser, default=3)
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per batch")
    parser.add_argument("--out", type=Path, required=True, help="output path without extension")
    args = parser.parse_args(argv)
    try:
        ratios = [float(ratio) for ratio in args.ratios.split(",")]
    except ValueError:
        parser.error(f"--ratios takes numbers in (0, 1], got {args.ratios!r}")
    if not all(0 < ratio <= 1 for ratio in ratios):
        parser.error(f"--ratios takes numbers in (0, 1], got {args.ratios!r}")
    missing = [str(run) for run in args.runs if not (run / "checkpoint.pt").is_file()]
    if missing:
        parser.error(f"not a trained run (no checkpoint.pt): {', '.join(missing)}")

    per_run = {str(run): bound_run(run, ratios, args.images_per_prototype, args.batch_size)
               for run in args.runs}
    comparisons: dict[str, Any] = {}
    for name in next(iter(per_run.values())):
        if name != "upsample":
            compared = compare_across_runs(list(per_run.values()), name, "upsample",
                                           ["consistency"])
            comparisons[name] = compared.get("consistency")
    record = {"runs": per_run, "ratios": ratios,
              "images_per_prototype": args.images_per_prototype,
              "comparison_with_upsample": comparisons}
    publish_report(args.out, table(per_run, {k: v for k, v in comparisons.items() if v}), record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
