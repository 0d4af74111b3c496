"""Where a learned prototype mask peaks: density weighting and the choice of the peak by
occlusion, the two steps that follow a learned mask before its box and peak are read.

Learned masks are nearly binary, and a mask that keeps a score can cover several separate
regions (a prototype that responds to a bird's head and its tail keeps its similarity with
both). The map's peak is read by the pointing game and Huang et al.'s part hits:

- :func:`weight_by_density` makes the peak the pixel that is both high and surrounded by
  mask mass (a plateau's centre, the densest blob rather than an isolated speck) instead of
  whichever near-top pixel ``argmax`` meets first;
- :func:`choose_peak_by_occlusion` asks the model instead: it removes the image around each
  of a few candidate points inside the mask (Zeiler & Fergus' occlusion sensitivity, ECCV
  2014, restricted to the mask's support) and moves the map's peak to the candidate whose
  removal lowers the score most.

Both keep the map's support: only its values are re-weighted, so the region-based metrics
barely change. Source: our choice (the HDM paper fuses its masks but says nothing about a
peak); measured in docs/method-design.md, density weighting and Choosing HDM's peak
(``benchmarks/results/hdm_density_*``, ``hdm_peak_choice_*``, ``mdm_peak_choice_*``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from hdm.hooks import explaining
from hdm.maps import gaussian_bumps, normalize_maps
from hdm.perturbation import blend, gaussian_blur, make_baseline
from hdm.targets import Target

__all__ = ["candidate_points", "choose_peak_by_occlusion", "map_candidates", "square_windows",
           "weight_by_density"]


def weight_by_density(maps: Tensor, sigma: float) -> Tensor:
    """Each map value times the map's normalised mass around it, rescaled to [0, 1].

    Learned masks are nearly binary: many pixels sit at or near the top value, and
    ``argmax`` (the pointing game, Huang et al.'s part hits) then picks one of them by the
    last digits, or by row-major order on a plateau (its top-left corner). Multiplying by
    ``normalize(blur(maps))`` keeps the map's support (zeros stay zero) and makes the peak the
    pixel that is both high and surrounded by mask mass: a plateau's centre, the densest blob
    rather than an isolated speck.

    Args:
        maps: ``(B, H, W)`` in [0, 1].
        sigma: Gaussian sigma of the neighbourhood in pixels (0 returns ``maps`` unchanged).
    """
    if sigma <= 0:
        return maps
    density = normalize_maps(gaussian_blur(maps[:, None], sigma)[:, 0])
    return normalize_maps(maps * density)


def candidate_points(maps: Tensor, step: int, count: int, min_relative: float,
                     spacing: float) -> tuple[Tensor, Tensor]:
    """Up to ``count`` grid points per map, highest first and more than ``spacing`` pixels
    apart: ((B, count, 2) long (row, column), (B, count) bool valid).

    The grid has a point every ``step`` pixels (from ``step // 2``); a point can be chosen
    when the map there is at least ``min_relative`` times the map's maximum and above 0, and
    it is more than ``spacing`` pixels (along rows or columns) from every point chosen before
    it (greedy non-maximum suppression, one step per candidate, batched over the maps).
    """
    height, width = maps.shape[-2:]
    grid_rows = torch.arange(step // 2, height, step, device=maps.device)
    grid_columns = torch.arange(step // 2, width, step, device=maps.device)
    coordinates = torch.cartesian_prod(grid_rows, grid_columns)  # (G, 2)
    values = maps[:, coordinates[:, 0], coordinates[:, 1]]  # (B, G)
    floor = (min_relative * maps.flatten(1).amax(dim=1)).clamp_min(torch.finfo(maps.dtype).tiny)
    values = values.where(values >= floor[:, None], torch.full_like(values, -1))
    points, valid = [], []
    for _ in range(min(count, len(coordinates))):
        best, index = values.max(dim=1)
        point = coordinates[index]  # (B, 2)
        points.append(point)
        valid.append(best >= 0)
        near = (coordinates[None] - point[:, None]).abs().amax(dim=2) <= spacing  # (B, G)
        values = values.masked_fill(near, -1)
    return torch.stack(points, dim=1), torch.stack(valid, dim=1)


def square_windows(points: Tensor, size: tuple[int, int], half_size: float) -> Tensor:
    """(B, K, H, W) float 0/1: the square of half side ``half_size`` pixels around each point
    (B, K, 2) (row, column)."""
    rows = torch.arange(size[0], device=points.device).view(1, 1, -1, 1)
    columns = torch.arange(size[1], device=points.device).view(1, 1, 1, -1)
    inside_rows = (rows - points[..., 0, None, None]).abs() <= half_size
    inside_columns = (columns - points[..., 1, None, None]).abs() <= half_size
    return (inside_rows & inside_columns).float()


def map_candidates(maps: Tensor, *, candidates: int = 8, grid_step: float = 0.08,
                   region: float = 36 / 224, min_relative: float = 0.3,
                   spacing: float = 1.0) -> tuple[Tensor, Tensor, float]:
    """The points of ``maps`` (B, H, W) that :func:`choose_peak_by_occlusion` tries, with its
    options (see there): ((B, candidates, 2) long (row, column), (B, candidates) bool valid,
    the half side in pixels of the square around each point)."""
    side = min(maps.shape[-2:])
    step = max(1, round(grid_step * side))
    half_size = region * side
    points, valid = candidate_points(maps, step, candidates, min_relative, spacing * half_size)
    return points, valid, half_size


def choose_peak_by_occlusion(model: Callable[[Tensor], Any], images: Tensor, targets: Any,
                             maps: Tensor, *, candidates: int = 8, grid_step: float = 0.08,
                             region: float = 36 / 224, min_relative: float = 0.3,
                             spacing: float = 1.0, baseline: str = "blur",
                             blur_sigma: float = 10.0, floor: float = 0.5,
                             prior: Tensor | None = None, tolerance: float = 1.0) -> Tensor:
    """``maps`` re-weighted so that each one peaks where removing the image lowers the score
    most: (B, H, W) in [0, 1].

    Args:
        model, targets: what was explained (as for any :class:`hdm.base.Explainer`); the model
            runs once per candidate on the occluded batch, in eval mode and without gradients.
        images: (B, C, H, W) in [0, 1]; maps: (B, H, W) in [0, 1], e.g. a learned mask.
        candidates: how many points of the map are tried (the highest grid points).
        grid_step: spacing of the candidate grid, as a share of the image's shorter side.
        region: half side of the removed square, as a share of the shorter side (default:
            Huang et al.'s 36 px at 224 px, the box their part hits use).
        min_relative: a candidate's map value must be at least this share of the maximum.
        spacing: candidates lie more than ``spacing * region`` apart (along rows or columns),
            so that they spread over the mask's regions instead of crowding its densest one.
        baseline, blur_sigma: what removed pixels become (:func:`hdm.perturbation.make_baseline`).
        floor: the weight, in [0, 1], of the map far from the chosen point (1 leaves the map
            unchanged); it rises to 1 at the point as a Gaussian of sigma ``region``. A map
            without a candidate (no grid point reaches ``min_relative``) is kept.
        prior, tolerance: a tie-break among the candidates the model relies on about as much.
            With ``prior`` (B, H, W) and ``tolerance`` < 1, the chosen point is, among the
            candidates whose drop is at least ``tolerance`` times the largest (positive)
            drop, the one where ``prior`` is highest; otherwise the largest drop. Our idea: a
            map may pick any part the model relies on, and a prior that stays on one part
            from image to image could keep the pick consistent. With a prototype's similarity
            map as the prior it did not (docs/consistency.md, how consistent a map that
            follows the model can be), so it is off unless asked for.
    """
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    if not 0 <= floor <= 1:
        raise ValueError(f"floor must lie in [0, 1], got {floor}")
    if not 0 < tolerance <= 1:
        raise ValueError(f"tolerance must lie in (0, 1], got {tolerance}")
    filled = make_baseline(images.detach(), baseline, blur_sigma)  # names a bad baseline
    batch, height, width = maps.shape
    points, valid, half_size = map_candidates(maps, candidates=candidates, grid_step=grid_step,
                                              region=region, min_relative=min_relative,
                                              spacing=spacing)
    windows = square_windows(points, (height, width), half_size)  # (B, K, H, W)
    target = Target(targets, batch, images.device)
    with explaining(model), torch.no_grad():  # one batch per candidate: one pass's memory
        reference = target.score(model(images))
        scores = torch.stack([target.score(model(blend(images, filled, 1 - window)))
                              for window in windows.unbind(dim=1)], dim=1)  # (B, K)
    drops = (reference[:, None] - scores).where(valid, -torch.inf)
    rows = torch.arange(batch, device=maps.device)
    choice = drops.argmax(dim=1)
    if prior is not None and tolerance < 1:
        largest = drops.amax(dim=1, keepdim=True)
        near_largest = valid & (largest > 0) & (drops >= tolerance * largest)
        prior_at = prior[rows[:, None], points[..., 0], points[..., 1]]  # (B, K)
        by_prior = prior_at.where(near_largest, -torch.inf).argmax(dim=1)
        choice = by_prior.where(near_largest.any(dim=1), choice)
    chosen = points[rows, choice].to(maps.dtype)
    nearness = gaussian_bumps(chosen, (height, width), half_size)
    weights = (floor + (1 - floor) * nearness).where(valid.any(dim=1)[:, None, None], 1.0)
    return normalize_maps(maps * weights)
