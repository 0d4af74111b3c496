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

Which cue could pick the same relied-on part from image to image? Three rules each pick ONE
part per pair among those relied on at least PICK_RATIO times the most (the pair's most
relied-on part where the rule has nothing to say), and the picked part's Huang box is scored
like a map's:

- ``preservation``: the part that, kept alone (everything else filled), keeps the most
  similarity: a per-image cue, like the occlusion drop itself;
- ``source part``: the part the prototype relies on most in its push image (the training image
  it was projected from), a cross-image anchor read from the ground truth: its row is what a
  perfect "same part as the prototype's source" cue would reach;
- ``transplant``: the same anchor judged by the model alone: each candidate's square (Huang's
  box, around its keypoint) is pasted over the source part's square in the push image, and
  the part whose transplant keeps the prototype's similarity highest is picked ("this looks
  like that", asked of the network).

Each bound and pick is compared with upsampling by the rule of issue 4's bar
(:func:`protoexplain.benchmark.compare_across_runs`: gain > seed spread and every seed's gain
> 0). Where even the bound does not beat upsampling, no map that follows the parts the model
relies on can.

    PYTHONPATH=. python benchmarks/consistency_bound.py \\
        runs/seeds/fashion_protopnet_seed{0,1,2} --ratios 1,0.75,0.5,0.25 \\
        --images-per-prototype 3 --pick-ratio 0.5 \\
        --out benchmarks/results/consistency_bound_fashion

Prints a Markdown table and writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch
from study_io import RunPairs, add_images_per_prototype, load_run_pairs, publish_report
from torch import Tensor

from hdm.peak_choice import square_windows
from protoexplain.benchmark import compare_across_runs
from protoexplain.data.collate import collate
from protoexplain.factory import build_dataset
from protoexplain.metrics.localization import LocalizationSettings, evaluate_localization
from protoexplain.metrics.pairs import EvaluationPairs
from protoexplain.metrics.parts import (
    keypoint_hits,
    part_box_hits,
    prototype_consistency,
    scaled_half_sizes,
)
from protoexplain.metrics.prototype_parts import responsible_parts, score_pair_parts
from protoexplain.metrics.scores import PairScores
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


def pick_relied_on_part(relied: Tensor, cue: Tensor) -> Tensor:
    """long (M,): each pair's relied-on part (``relied`` bool (M, N)) where ``cue`` (M, N) is
    highest (first on ties), -1 for a pair that relies on none."""
    picked = cue.masked_fill(~relied, float("-inf")).argmax(dim=1)
    return picked.where(relied.any(dim=1), -1)


def transplant(test: Tensor, source: Tensor, from_points: Tensor, to_points: Tensor,
               half_size: float) -> Tensor:
    """(B, C, H, W): each ``source`` image whose square of half side ``half_size`` around
    ``to_points`` (B, 2) long (row, column) holds ``test``'s pixels around ``from_points``
    (shifted, edge pixels repeated where the shift leaves the image)."""
    batch, _, height, width = test.shape
    shift = from_points - to_points
    rows = (torch.arange(height, device=test.device) + shift[:, :1]).clamp(0, height - 1)
    columns = (torch.arange(width, device=test.device) + shift[:, 1:]).clamp(0, width - 1)
    every = torch.arange(batch, device=test.device)[:, None, None]
    moved = test[every, :, rows[:, :, None], columns[:, None, :]].permute(0, 3, 1, 2)
    window = square_windows(to_points[:, None], (height, width), half_size)[:, 0, None]
    return source + window * (moved - source)


def keypoint_pixels(keypoints: Tensor) -> Tensor:
    """long (..., 2) (row, column) of keypoints (..., 3) given as x, y, visible."""
    return keypoints[..., :2].flip(-1).floor().long()


def source_anchors(loaded: RunPairs, settings: LocalizationSettings,
                   batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per prototype of the run: the part it relies on most in its push image (long (P,), -1
    where none or not projected), that image (P, C, H, W) and its part keypoints (P, N, 3)."""
    records = loaded.run.records
    push_set = build_dataset(loaded.run.config, "train", augment=False)
    batch = collate([push_set[record.sample_index] for record in records])
    ids = torch.tensor([record.prototype for record in records])
    sources = EvaluationPairs(
        images=batch["image"], indices=torch.tensor([r.sample_index for r in records]),
        ground_truth={key: batch[key] for key in ("part_masks", "part_keypoints")},
        part_names=(), rows=torch.arange(len(records)), prototypes=ids)
    scores, visible = score_pair_parts(loaded.model, sources,
                                       similarity_at=settings.similarity_at, fill=settings.fill,
                                       batch_size=batch_size, device=loaded.run.device,
                                       progress=False)
    count = loaded.model.prototype_class_identity.shape[0]
    home = torch.full((count,), -1, dtype=torch.long)
    home[ids] = responsible_parts(scores, visible)
    images = torch.zeros((count, *batch["image"].shape[1:]))
    images[ids] = batch["image"]
    keypoints = torch.zeros((count, *batch["part_keypoints"].shape[1:]), dtype=torch.float64)
    keypoints[ids] = batch["part_keypoints"].double()
    return home, images, keypoints


def transplant_scores(loaded: RunPairs, anchors: tuple[Tensor, Tensor, Tensor], keypoints: Tensor,
                      half_size: float, similarity_at: str, batch_size: int) -> Tensor:
    """float (M, N): the prototype's similarity in its push image after each part's square of
    the pair's test image replaced the square of the prototype's source part (meaningless
    where the prototype has no source part, ``anchors[0]`` -1)."""
    home, source_images, source_keypoints = anchors
    pairs, device = loaded.pairs, loaded.run.device
    parts = keypoints.shape[1]
    every = torch.arange(home.shape[0])
    to_point = keypoint_pixels(source_keypoints[every, home.clamp_min(0)])  # (P, 2)
    scores = []
    for start in range(0, len(pairs), batch_size):
        ids = pairs.prototypes[start:start + batch_size]
        tests = pairs.images[pairs.rows[start:start + batch_size]]
        from_points = keypoint_pixels(keypoints[start:start + batch_size])  # (B, N, 2)
        images = transplant(tests.repeat_interleave(parts, dim=0).to(device),
                            source_images[ids].repeat_interleave(parts, dim=0).to(device),
                            from_points.flatten(0, 1).to(device),
                            to_point[ids].repeat_interleave(parts, dim=0).to(device), half_size)
        repeated = ids.repeat_interleave(parts).to(device)
        scores.append(PairScores(loaded.model, images, repeated, similarity_at)
                      .reference.view(-1, parts).cpu())
    return torch.cat(scores).double()


def bound_run(run_dir: Path, ratios: list[float], images_per_prototype: int | None,
              batch_size: int, pick_ratio: float) -> dict[str, dict[str, float]]:
    """Upsampling's consistency, the bound for each ratio and the picks on one run's pairs:
    ``{row: {"consistency": value}}`` (``upsample``, ``oracle_consistency (model)`` from the
    benchmark code as a check, ``bound, ratio R`` and ``pick at ratio R: RULE``)."""
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

    def consistency(hits: Tensor) -> dict[str, float]:
        consistent = prototype_consistency(hits, keypoints[..., 2] > 0, groups,
                                           int(groups.max()) + 1,
                                           settings.consistency_threshold)
        return {"consistency": float(consistent.double().mean())}

    rows = {"upsample": {"consistency": upsample["consistency"]},
            "oracle_consistency (model)": {"consistency": upsample["oracle_consistency"]}}
    for ratio in ratios:
        rows[f"bound, ratio {ratio:g}"] = consistency(
            union_of_hits(relied_on_parts(scores, visible, ratio), keypoints, half_size))

    masks = pairs.ground_truth["part_masks"]
    complement = dataclasses.replace(pairs, ground_truth={**pairs.ground_truth,
                                                          "part_masks": ~masks})
    kept_drop, _ = score_pair_parts(loaded.model, complement,
                                    similarity_at=settings.similarity_at, fill=settings.fill,
                                    batch_size=batch_size, device=device, progress=False)
    anchors = source_anchors(loaded, settings, batch_size)
    home = anchors[0][pairs.prototypes]
    is_home = torch.arange(scores.shape[1])[None] == home[:, None]
    transplanted = transplant_scores(loaded, anchors, keypoints, half_size[0],
                                     settings.similarity_at, batch_size)
    anchored = (home >= 0)[:, None]  # else the occlusion scores pick the most relied-on part
    relied = relied_on_parts(scores, visible, pick_ratio)
    for rule, cue in (("preservation", -kept_drop.double()),
                      ("source part", scores.double().masked_fill(is_home, float("inf"))),
                      ("transplant", torch.where(anchored, transplanted, scores.double()))):
        rows[f"pick at ratio {pick_ratio:g}: {rule}"] = consistency(
            part_box_hits(keypoints, pick_relied_on_part(relied, cue), half_size))
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
    parser.add_argument("--pick-ratio", type=float, default=0.5,
                        help="the picks choose among parts relied on at least this share of "
                             "the most relied-on one, in (0, 1] (default 0.5)")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per batch")
    parser.add_argument("--out", type=Path, required=True, help="output path without extension")
    args = parser.parse_args(argv)
    try:
        ratios = [float(ratio) for ratio in args.ratios.split(",")]
    except ValueError:
        parser.error(f"--ratios takes numbers in (0, 1], got {args.ratios!r}")
    if not all(0 < ratio <= 1 for ratio in ratios):
        parser.error(f"--ratios takes numbers in (0, 1], got {args.ratios!r}")
    if not 0 < args.pick_ratio <= 1:
        parser.error(f"--pick-ratio takes a number in (0, 1], got {args.pick_ratio:g}")
    missing = [str(run) for run in args.runs if not (run / "checkpoint.pt").is_file()]
    if missing:
        parser.error(f"not a trained run (no checkpoint.pt): {', '.join(missing)}")

    per_run = {str(run): bound_run(run, ratios, args.images_per_prototype, args.batch_size,
                                   args.pick_ratio)
               for run in args.runs}
    comparisons: dict[str, Any] = {}
    for name in next(iter(per_run.values())):
        if name != "upsample":
            compared = compare_across_runs(list(per_run.values()), name, "upsample",
                                           ["consistency"])
            comparisons[name] = compared.get("consistency")
    record = {"runs": per_run, "ratios": ratios, "pick_ratio": args.pick_ratio,
              "images_per_prototype": args.images_per_prototype,
              "comparison_with_upsample": comparisons}
    publish_report(args.out, table(per_run, {k: v for k, v in comparisons.items() if v}), record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
