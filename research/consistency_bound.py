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

Those picks choose among perfect candidates, the parts' keypoints. ``--methods mdm`` asks
what a learned mask's own candidates allow (:func:`method_rows`): the method's own peak, the
transplant among the points of its map that MDM's occlusion peak tries (anchored at the
method's own peak in the push image: no ground truth at all), and the candidate that hits the
prototype's source part (ground truth: what a perfect anchor to that part would pick among
those candidates).

Each bound and pick is compared with upsampling by the benchmark's bar
(:func:`protoexplain.benchmark.compare_across_runs`: gain > seed spread and every seed's gain
> 0). Where even the bound does not beat upsampling, no map that follows the parts the model
relies on can.

    python research/consistency_bound.py \\
        runs/seeds/fashion_protopnet_seed{0,1,2} --ratios 1,0.75,0.5,0.25 \\
        --images-per-prototype 3 --pick-ratio 0.5 --methods mdm \\
        --out research/results/consistency_bound_fashion

Prints a Markdown table and writes OUT.json and OUT.md. Results: docs/consistency.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # study_io

import torch
from study_io import RunPairs, add_images_per_prototype, load_run_pairs, publish_report
from torch import Tensor

from protoexplain.benchmark import compare_across_runs
from protoexplain.data.collate import collate
from protoexplain.factory import build_dataset
from protoexplain.metrics.localization import LocalizationSettings, evaluate_localization
from protoexplain.metrics.pairs import EvaluationPairs
from protoexplain.metrics.parts import (
    keypoint_hits,
    map_peaks,
    part_box_hits,
    prototype_consistency,
    scaled_half_sizes,
)
from protoexplain.metrics.prototype_parts import responsible_parts, score_pair_parts
from protoexplain.metrics.scores import PairScores
from protoexplain.pipeline import method_options, metric_settings
from prototypes import localize
from prototypes.localization.learned_masks import LEARNED_MASK_METHODS
from prototypes.localization.peak_choice import map_candidates, square_windows


def relied_on_parts(scores: Tensor, visible: Tensor, ratio: float) -> Tensor:
    """bool (M, N): the visible parts whose occlusion score is above zero and at least
    ``ratio`` times the pair's largest score over visible parts."""
    best = scores.masked_fill(~visible, float("-inf")).max(dim=1, keepdim=True).values
    return visible & (scores > 0) & (scores >= ratio * best)


def hits_around(centres: Tensor, keypoints: Tensor, half_size: tuple[float, float]) -> Tensor:
    """bool (M, K, N): the parts hit by the Huang box around each of a pair's K centres
    (M, K, 2) (row y, column x). keypoints: (M, N, 3) as x, y, visible."""
    pairs, count = centres.shape[:2]
    around = keypoint_hits(centres.flatten(0, 1).to(keypoints.dtype),
                           keypoints.repeat_interleave(count, dim=0), half_size)
    return around.view(pairs, count, -1)


def union_of_hits(relied: Tensor, keypoints: Tensor, half_size: tuple[float, float]) -> Tensor:
    """bool (M, N): the parts hit by the Huang box centred on the keypoint of any relied-on
    part of the pair. keypoints: (M, N, 3) as x, y, visible."""
    centres = keypoints[..., :2].flip(-1)  # (row y, column x)
    return (hits_around(centres, keypoints, half_size) & relied[:, :, None]).any(dim=1)


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
                                       score=settings.score, fill=settings.fill,
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


def transplant_scores(loaded: RunPairs, source_images: Tensor, candidates: Tensor,
                      targets: Tensor, half_size: float, score: str,
                      batch_size: int) -> Tensor:
    """float (M, K): the prototype's similarity in its push image (``source_images`` (P, C, H,
    W), one per prototype) after the square of the pair's test image around each candidate
    (``candidates`` (M, K, 2) long (row, column)) replaced the square around the prototype's
    target point (``targets`` (P, 2) long)."""
    pairs, device = loaded.pairs, loaded.run.device
    count = candidates.shape[1]
    scores = []
    for start in range(0, len(pairs), batch_size):
        ids = pairs.prototypes[start:start + batch_size]
        tests = pairs.images[pairs.rows[start:start + batch_size]]
        images = transplant(tests.repeat_interleave(count, dim=0).to(device),
                            source_images[ids].repeat_interleave(count, dim=0).to(device),
                            candidates[start:start + batch_size].flatten(0, 1).to(device),
                            targets[ids].repeat_interleave(count, dim=0).to(device), half_size)
        repeated = ids.repeat_interleave(count).to(device)
        scores.append(PairScores(loaded.model, images, repeated, score)
                      .reference.view(-1, count).cpu())
    return torch.cat(scores).double()


def localized_maps(loaded: RunPairs, method: str, images: Tensor, ids: Tensor,
                   batch_size: int) -> Tensor:
    """(B, H, W) on the CPU: ``method``'s maps (with the run's options for it) of prototype
    ``ids[b]`` in ``images[b]``, computed on the run's device in batches."""
    options = method_options(loaded.run.config, [method])[method]
    device = loaded.run.device
    return torch.cat([localize(loaded.model, images[start:start + batch_size].to(device),
                               ids[start:start + batch_size].to(device), method=method,
                               **options).maps.detach().float().cpu()
                      for start in range(0, len(ids), batch_size)])


def method_rows(loaded: RunPairs, method: str, anchors: tuple[Tensor, Tensor, Tensor],
                keypoints: Tensor, half_size: tuple[float, float], score: str,
                batch_size: int) -> tuple[dict[str, Tensor], float]:
    """The part hits (bool (M, N)) of three points per pair of a method's map, and the share
    of anchored pairs where one of the map's candidates reaches the prototype's source part.

    The candidates are the points
    :func:`prototypes.localization.peak_choice.map_candidates` takes from the map (those
    MDM's occlusion peak tries). Rows: ``its peak`` (the map's own, as the benchmark
    scores it); ``transplant among its candidates``: the candidate whose square, pasted into
    the push image over the method's own peak there, keeps the prototype's similarity highest
    (the ``transplant`` pick with the method's candidates and anchor: no ground truth);
    ``its candidate on the source part``: the first candidate whose Huang box hits the part
    the prototype relies on most in its push image (ground truth: a perfect anchor to that
    part). Pairs whose prototype has no source part, or no candidate, keep the map's peak."""
    pairs = loaded.pairs
    home, source_images, _ = anchors
    maps = localized_maps(loaded, method, pairs.images[pairs.rows], pairs.prototypes, batch_size)
    prototypes = torch.arange(home.shape[0])
    source_peaks = map_peaks(localized_maps(loaded, method, source_images, prototypes,
                                            batch_size))
    candidates, valid, _ = map_candidates(maps)
    peaks = map_peaks(maps)
    anchored = (home[pairs.prototypes] >= 0) & valid.any(dim=1)
    rows = torch.arange(len(peaks))

    def hits_at(points: Tensor) -> Tensor:
        return keypoint_hits(points.to(keypoints.dtype), keypoints, half_size)

    transplanted = transplant_scores(loaded, source_images, candidates, source_peaks,
                                     half_size[0], score, batch_size)
    best = transplanted.masked_fill(~valid, float("-inf")).argmax(dim=1)
    by_transplant = torch.where(anchored[:, None], candidates[rows, best], peaks)
    candidate_hits = hits_around(candidates, keypoints, half_size)
    on_source = (candidate_hits[rows, :, home[pairs.prototypes].clamp_min(0)] & valid
                 & anchored[:, None])
    by_source = torch.where(on_source.any(dim=1)[:, None],
                            candidates[rows, on_source.int().argmax(dim=1)], peaks)
    reached = float(on_source.any(dim=1).double().sum() / anchored.sum().clamp_min(1))
    return {f"{method}: its peak": hits_at(peaks),
            f"{method}: transplant among its candidates": hits_at(by_transplant),
            f"{method}: its candidate on the source part": hits_at(by_source)}, reached


def bound_run(run_dir: Path, ratios: list[float], images_per_prototype: int | None,
              batch_size: int, pick_ratio: float, methods: list[str]
              ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Upsampling's consistency, the bound for each ratio, the picks and each method's rows on
    one run's pairs: ``{row: {"consistency": value}}`` (``upsample``, ``oracle_consistency
    (model)`` from the benchmark code as a check, ``bound, ratio R``, ``pick at ratio R:
    RULE`` and :func:`method_rows`' rows), and per method the share of pairs where one of its
    candidates reaches the prototype's source part."""
    loaded = load_run_pairs(run_dir, images_per_prototype)
    pairs, device = loaded.pairs, loaded.run.device
    if "part_keypoints" not in pairs.ground_truth:
        raise SystemExit(f"{run_dir}: its data set has no part keypoints to be consistent on")
    settings = metric_settings(loaded.run.config, stability=False, sanity=False,
                               deletion_insertion=False)
    scores, visible = score_pair_parts(loaded.model, pairs, score=settings.score,
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
                                    score=settings.score, fill=settings.fill,
                                    batch_size=batch_size, device=device, progress=False)
    anchors = source_anchors(loaded, settings, batch_size)
    source_home, _, source_keypoints = anchors
    home = source_home[pairs.prototypes]
    is_home = torch.arange(scores.shape[1])[None] == home[:, None]
    source_points = keypoint_pixels(
        source_keypoints[torch.arange(len(source_home)), source_home.clamp_min(0)])
    transplanted = transplant_scores(loaded, anchors[1], keypoint_pixels(keypoints),
                                     source_points, half_size[0], settings.score,
                                     batch_size)
    anchored = (home >= 0)[:, None]  # else the occlusion scores pick the most relied-on part
    relied = relied_on_parts(scores, visible, pick_ratio)
    for rule, cue in (("preservation", -kept_drop.double()),
                      ("source part", scores.double().masked_fill(is_home, float("inf"))),
                      ("transplant", torch.where(anchored, transplanted, scores.double()))):
        rows[f"pick at ratio {pick_ratio:g}: {rule}"] = consistency(
            part_box_hits(keypoints, pick_relied_on_part(relied, cue), half_size))
    reached = {}
    for method in methods:
        hits, reached[method] = method_rows(loaded, method, anchors, keypoints, half_size,
                                            settings.score, batch_size)
        rows.update({name: consistency(method_hits) for name, method_hits in hits.items()})
    return rows, reached


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
    parser.add_argument("--methods", default="",
                        help="comma-separated learned-mask methods (e.g. mdm,hdm) whose own "
                             "peaks and candidates are scored too (default: none)")
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
    methods = [method for method in args.methods.split(",") if method]
    unknown = [method for method in methods if method not in LEARNED_MASK_METHODS]
    if unknown:
        parser.error(f"--methods takes learned-mask methods ({', '.join(LEARNED_MASK_METHODS)}"
                     f"), got {', '.join(unknown)}")
    missing = [str(run) for run in args.runs if not (run / "checkpoint.pt").is_file()]
    if missing:
        parser.error(f"not a trained run (no checkpoint.pt): {', '.join(missing)}")

    results = {str(run): bound_run(run, ratios, args.images_per_prototype, args.batch_size,
                                   args.pick_ratio, methods)
               for run in args.runs}
    per_run = {run: rows for run, (rows, _) in results.items()}
    reached = {run: shares for run, (_, shares) in results.items()}
    comparisons: dict[str, Any] = {}
    for name in next(iter(per_run.values())):
        if name != "upsample":
            compared = compare_across_runs(list(per_run.values()), name, "upsample",
                                           ["consistency"])
            comparisons[name] = compared.get("consistency")
    record = {"runs": per_run, "ratios": ratios, "pick_ratio": args.pick_ratio,
              "images_per_prototype": args.images_per_prototype,
              "comparison_with_upsample": comparisons,
              "candidates_reach_source_part": reached}
    text = table(per_run, {k: v for k, v in comparisons.items() if v})
    for method in methods:
        shares = ", ".join(f"{shares[method]:.3f}" for shares in reached.values())
        text += (f"\nPairs where one of {method}'s candidates reaches the prototype's source "
                 f"part, per run: {shares}\n")
    publish_report(args.out, text, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
