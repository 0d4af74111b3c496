"""Part hits, consistency and stability of prototypes (Huang et al., ICCV 2023).

Source: Huang, Xue, Huang, Zhang, Song, Jing, Song, "Evaluation and Improvement of
Interpretability for Self-Explainable Part-Prototype Networks", ICCV 2023; official code
hqhQAQ/EvalProtoPNet, ``util/eval_interpretability.py`` (commit ab33e5d):

- the region of a prototype in an image is the box of half side ``half_size = 36`` pixels
  (at 224 px) around the peak of its activation map (the first maximum in row-major order,
  lines 109-111), and a part is *hit* when its keypoint lies in that box, borders included
  (lines 114-117; ``in_bbox`` in ``util/local_parts.py``, line 8); only visible keypoints
  are kept (``util/local_parts.py``, line 76);
- a prototype is *consistent* when, for at least one part, the share of its images in which
  the part is hit, among those in which the part is visible, is at least ``part_thresh = 0.8``
  (lines 127-152); the consistency score is the share of consistent prototypes;
- *stability* is, per prototype, the share of its images whose hit vector (over all parts)
  is unchanged when Gaussian noise of standard deviation 0.2, clipped to [-0.25, 0.25], is
  added to the normalised input (``perturb_img``, lines 13-17; lines 156-170), averaged over
  prototypes.

The original scores are percentages; here they are fractions in [0, 1]. The original
truncates keypoints to whole pixels (line 95); here they are used as the data set gives
them. The original maps are the bicubic upsampled similarity maps; here they are whatever a
localization method returns, so the same protocol scores every method.
"""

from __future__ import annotations

import torch
from torch import Tensor

HUANG_HALF_SIZE = 36.0
"""Half side of the region around the peak in the original, in pixels at 224 px."""
HUANG_IMAGE_SIZE = 224.0
CONSISTENCY_THRESHOLD = 0.8
NOISE_STD = 0.2
NOISE_BOUND = 0.25


def scaled_half_sizes(image_size: tuple[int, int]) -> tuple[float, float]:
    """Huang's 36-pixel half side at 224 px scaled to an (H, W) image: (half_y, half_x)."""
    height, width = image_size
    scale = HUANG_HALF_SIZE / HUANG_IMAGE_SIZE
    return scale * height, scale * width


def map_peaks(maps: Tensor) -> Tensor:
    """(B, 2) long (row, column) of the first maximum, row-major, of each map (B, H, W)."""
    width = maps.shape[-1]
    flat = maps.flatten(1).argmax(dim=1)
    return torch.stack([flat // width, flat % width], dim=1)


def keypoint_hits(centres: Tensor, keypoints: Tensor, half_size: tuple[float, float]
                  ) -> Tensor:
    """Which visible keypoints lie in the box around each centre.

    centres: (B, 2) (row y, column x); keypoints: (B, N, 3) as x, y, visible in pixel
    coordinates (pixel (row y, column x) at (x, y)); half_size: (half_y, half_x) in pixels.
    Returns bool (B, N): the part is visible and its keypoint lies in the box
    ``[centre - half, centre + half]`` (borders included, as the original).
    """
    half_y, half_x = half_size
    inside_y = (keypoints[..., 1] - centres[:, None, 0]).abs() <= half_y
    inside_x = (keypoints[..., 0] - centres[:, None, 1]).abs() <= half_x
    return inside_y & inside_x & (keypoints[..., 2] > 0)


def part_box_hits(keypoints: Tensor, parts: Tensor, half_size: tuple[float, float]) -> Tensor:
    """Which parts the box centred on each pair's chosen part's keypoint hits: bool (B, N).

    keypoints: (B, N, 3) as for :func:`keypoint_hits`; parts: long (B,) the chosen part of
    each pair, -1 for none (that pair hits nothing). The oracle box of the localization
    metrics (``parts``: the part the prototype relies on in each image)."""
    part = parts.clamp(min=0)
    rows = torch.arange(len(part), device=part.device)
    centres = keypoints[rows, part, :2].flip(-1)  # (x, y) -> (row y, column x)
    return keypoint_hits(centres, keypoints, half_size) & (parts >= 0)[:, None]


def part_hits(maps: Tensor, keypoints: Tensor, half_size: tuple[float, float]) -> Tensor:
    """Which parts each map's peak region hits: :func:`keypoint_hits` around the peaks of
    ``maps`` (B, H, W); half_size e.g. from :func:`scaled_half_sizes`."""
    return keypoint_hits(map_peaks(maps).to(keypoints.dtype), keypoints, half_size)


def prototype_consistency(hits: Tensor, visible: Tensor, groups: Tensor, num_groups: int,
                          threshold: float = CONSISTENCY_THRESHOLD) -> Tensor:
    """Consistency of each prototype (Huang et al.): bool (num_groups,).

    hits, visible: bool (M, N) per (image, prototype) pair and part; groups: long (M,) the
    prototype (0 .. num_groups - 1) of each pair. A prototype is consistent when some part is
    hit in at least ``threshold`` of the pairs where that part is visible. Prototypes without
    pairs are not consistent.
    """
    hit_counts = torch.zeros(num_groups, hits.shape[1], device=hits.device)
    visible_counts = torch.zeros_like(hit_counts)
    hit_counts.index_add_(0, groups, hits.float())
    visible_counts.index_add_(0, groups, visible.float())
    frequency = hit_counts / visible_counts.clamp(min=1.0)
    return (frequency >= threshold).any(dim=1)


def prototype_stability(hits: Tensor, noisy_hits: Tensor, groups: Tensor, num_groups: int
                        ) -> Tensor:
    """Stability of each prototype (Huang et al.): float (num_groups,) in [0, 1].

    hits, noisy_hits: bool (M, N) part hits on the clean and on the perturbed images; groups:
    long (M,) prototype of each pair. The share of a prototype's pairs whose hit vectors are
    identical; NaN for prototypes without pairs.
    """
    unchanged = (hits == noisy_hits).all(dim=1).float()
    totals = torch.zeros(num_groups, device=hits.device)
    counts = torch.zeros(num_groups, device=hits.device)
    totals.index_add_(0, groups, unchanged)
    counts.index_add_(0, groups, torch.ones_like(unchanged))
    return totals / counts.where(counts > 0, torch.full_like(counts, float("nan")))


def perturb_images(images: Tensor, std: Tensor, *, noise_std: float = NOISE_STD,
                   bound: float = NOISE_BOUND, generator: torch.Generator | None = None
                   ) -> Tensor:
    """Images in [0, 1] with Huang's noise added in the model's normalised input space.

    images: (B, C, H, W) in [0, 1]; std: (C,) the model's normalisation std. Noise
    ``n ~ N(0, noise_std^2)`` clipped to ``[-bound, bound]`` is added to ``(x - mean) / std``,
    which is ``x + n * std`` in image space. As in the original, the result is not clipped
    to [0, 1] (the model sees exactly the perturbed normalised input).
    """
    noise = torch.randn(images.shape, generator=generator, device=images.device,
                        dtype=images.dtype)
    noise = (noise * noise_std).clamp(-bound, bound)
    return images + noise * std.to(images).view(1, -1, 1, 1)
