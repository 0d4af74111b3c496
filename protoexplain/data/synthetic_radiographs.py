"""SyntheticRadiographs: the embedded multi-label data set, chest-radiograph-like images with
zero or more lesions, each with its box.

Every image is a grey "chest": a body silhouette on dark air, two dark lung fields, a bright
spine and heart shadow, faint ribs and low-frequency texture, with random geometry, contrast
and noise. On it lie 0 to ``max_lesions`` lesions (the count uniform), of five kinds named
after ChestX-ray14 findings and told apart by shape, size, texture and place:

- ``Nodule``: a small bright dome-shaped disc inside a lung;
- ``Mass``: a larger bright lobulated blob inside a lung;
- ``Effusion``: a bright band filling the bottom of a lung field, its top a meniscus that
  rises towards the outer side;
- ``Consolidation``: a mottled (textured) bright patch inside a lung;
- ``Pneumothorax``: a dark crescent without lung texture along the outer and upper edge of
  a lung, bounded by a thin bright line.

The label is multi-hot over the kinds present. Each lesion's ``boxes`` row is the tight box
of the pixels it changed, with its kind in ``box_labels``; lesions never overlap. Generation
is deterministic from ``(seed, split, index)`` and takes a few milliseconds per 64-pixel
image (cached after the first access); nothing is read or written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from protoexplain.data.ground_truth import box_from_mask
from protoexplain.data.splits import SPLITS, check_split, split_sample_count

FINDINGS = ("Nodule", "Mass", "Effusion", "Consolidation", "Pneumothorax")
"""Lesion kinds, in label order."""

REGIONAL = ("Effusion", "Pneumothorax")
"""Kinds tied to a place in a lung (at most one of each per lung); placed first."""

DEFAULT_NUM_SAMPLES = {"train": 2000, "val": 400, "test": 800}
PLACEMENT_TRIES = 30
"""Attempts at a non-overlapping position before a lesion is left out."""

LUNG_EDGE = 10.0
"""Sharpness of the lung fields' edges: darkness ramps up over the outer 1 / LUNG_EDGE of
the ellipse's normalised radius; lesions lie inside that ramp."""


@dataclass(frozen=True)
class Lung:
    """A lung field: an ellipse in unit coordinates (x right, y down, image = [0, 1]^2);
    ``side`` is -1 for the lung drawn on the left of the image, +1 on the right (the
    outer side is towards ``side``)."""

    centre: tuple[float, float]
    axes: tuple[float, float]
    angle: float
    side: int


@dataclass(frozen=True)
class RadiographRendering:
    """Everything drawn for one item (for tests and visual checks).

    image: uint8 (H, W), the returned grey image (after gain and noise).
    clean_image: float32 (H, W), before gain and noise.
    lesion_masks: bool (N, H, W), the pixels each lesion changed.
    lesion_kinds: int (N,), each lesion's index in ``FINDINGS``.
    label: float32 (K,) multi-hot.
    """

    image: np.ndarray
    clean_image: np.ndarray
    lesion_masks: np.ndarray
    lesion_kinds: np.ndarray
    label: np.ndarray


def _ellipse(grid: tuple[np.ndarray, np.ndarray], centre: tuple[float, float],
             axes: tuple[float, float], angle: float = 0.0) -> np.ndarray:
    """Normalised radius (H, W): < 1 inside the ellipse (``angle`` in radians)."""
    xs, ys = grid
    dx, dy = xs - centre[0], ys - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u = (dx * cos + dy * sin) / axes[0]
    v = (-dx * sin + dy * cos) / axes[1]
    return np.sqrt(u * u + v * v)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Noise in [0, 1] (size, size) varying over about ``cells`` cells per side."""
    low = rng.random((cells, cells)).astype(np.float32)
    field = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(field, 0.0, 1.0)


def _blob_radius(rng: np.random.Generator, grid: tuple[np.ndarray, np.ndarray],
                 centre: tuple[float, float], radius: float, lobulation: float) -> np.ndarray:
    """Radius (H, W) normalised by a lobulated outline ``radius (1 + sum_k a_k cos(k t +
    phi_k))``, k = 2..4, ``|a_k| <= lobulation``: < 1 inside the blob."""
    xs, ys = grid
    dx, dy = xs - centre[0], ys - centre[1]
    theta = np.arctan2(dy, dx)
    outline = np.ones_like(theta)
    for k in (2, 3, 4):
        outline += rng.uniform(-lobulation, lobulation) * np.cos(k * theta
                                                                  + rng.uniform(0, 2 * np.pi))
    return np.sqrt(dx * dx + dy * dy) / (radius * outline)


class SyntheticRadiographs(Dataset):
    """Generated chest-radiograph-like images with multi-label lesions and their boxes.

    Args:
        root: unused (the images are generated); accepted so every data set takes ``root``.
        split: ``train``, ``val`` or ``test`` (different images for the same index).
        image_size: side in pixels (>= 32); every size is drawn from the same unit-square
            geometry.
        num_samples: items in the split, or a mapping from split name to count (default
            2000 / 400 / 800).
        max_lesions: the number of lesions is uniform in 0..max_lesions (a lesion that finds
            no free place after ``PLACEMENT_TRIES`` draws is left out, which is rare).
        noise: standard deviation of the per-pixel Gaussian noise ([0, 1] units).
        seed: generator seed; item ``i`` of ``split`` is drawn from ``(seed, split, i)``.
        cache: keep generated items in memory (about 4 kB each at 64 pixels).

    Items: ``image`` float32 (3, H, W) in [0, 1] (the grey image on three channels),
    ``label`` float32 (K,) multi-hot, ``index``, ``boxes`` float32 (N, 4) ``y0, y1, x0, x1``
    (end-exclusive pixels) and ``box_labels`` int64 (N,), one row per lesion. Attributes:
    ``classes`` (``FINDINGS``), ``num_classes``, ``multi_label = True``.
    """

    multi_label = True

    def __init__(self, root: str | Path | None = None, split: str = "train", *,
                 image_size: int = 64, num_samples: int | Mapping[str, int] | None = None,
                 max_lesions: int = 3, noise: float = 0.02, seed: int = 0,
                 cache: bool = True) -> None:
        if image_size < 32:
            raise ValueError(f"SyntheticRadiographs: image_size must be >= 32, got {image_size}")
        num_samples = split_sample_count("SyntheticRadiographs", split, num_samples,
                                         DEFAULT_NUM_SAMPLES)
        if max_lesions < 0:
            raise ValueError(f"SyntheticRadiographs: max_lesions must be >= 0, got {max_lesions}")
        if noise < 0:
            raise ValueError(f"SyntheticRadiographs: noise must be >= 0, got {noise}")
        self.root = root
        self.split = check_split(split)
        self.image_size = image_size
        self.num_samples = DEFAULT_NUM_SAMPLES[split] if num_samples is None else num_samples
        self.max_lesions = max_lesions
        self.noise = noise
        self.seed = seed
        self.cache = cache
        self.classes = list(FINDINGS)
        self.num_classes = len(FINDINGS)
        self._cached: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.num_samples

    def render(self, index: int) -> RadiographRendering:
        """Draw item ``index`` with every intermediate (see :class:`RadiographRendering`)."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"SyntheticRadiographs: index {index} out of range "
                             f"[0, {self.num_samples})")
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        size = self.image_size
        centres = (np.arange(size, dtype=np.float32) + 0.5) / size
        grid = np.meshgrid(centres, centres)

        image, lungs = self._chest(rng, grid)
        count = int(rng.integers(0, self.max_lesions + 1))
        kinds = sorted(rng.integers(0, len(FINDINGS), count).tolist(),
                       key=lambda k: FINDINGS[k] not in REGIONAL)
        occupied = np.zeros((size, size), dtype=bool)
        used_regions: set[tuple[str, int]] = set()
        masks, placed = [], []
        for kind in kinds:
            drawn = self._lesion(rng, FINDINGS[kind], image, grid, lungs, occupied,
                                 used_regions)
            if drawn is None:
                continue
            change, mask = drawn
            image = image + change
            occupied |= mask
            masks.append(mask)
            placed.append(kind)

        clean = image.astype(np.float32)
        gain = rng.uniform(0.9, 1.1)
        offset = rng.uniform(-0.04, 0.04)
        noisy = clean * gain + offset + rng.normal(0.0, self.noise, clean.shape)
        final = np.round(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)
        label = np.zeros(len(FINDINGS), dtype=np.float32)
        label[placed] = 1.0
        lesion_masks = (np.stack(masks) if masks
                        else np.zeros((0, size, size), dtype=bool))
        return RadiographRendering(final, clean, lesion_masks, np.array(placed, dtype=np.int64),
                                   label)

    def _chest(self, rng: np.random.Generator, grid: tuple[np.ndarray, np.ndarray]
               ) -> tuple[np.ndarray, tuple[Lung, Lung]]:
        """The lesion-free chest (H, W) float and its two lung fields."""
        size = self.image_size
        xs, ys = grid
        image = np.full((size, size), rng.uniform(0.05, 0.12), dtype=np.float64)
        body = _ellipse(grid, (0.5 + rng.uniform(-0.02, 0.02), 0.56),
                        (rng.uniform(0.42, 0.48), rng.uniform(0.5, 0.56)))
        image += np.clip((1.0 - body) * 8.0, 0.0, 1.0) * rng.uniform(0.4, 0.5)

        spread = rng.uniform(0.17, 0.2)
        height = rng.uniform(0.26, 0.31)
        top = rng.uniform(0.44, 0.5)
        left, right = (
            Lung(centre=(0.5 + side * spread + rng.uniform(-0.015, 0.015),
                         top + rng.uniform(-0.015, 0.015)),
                 axes=(rng.uniform(0.12, 0.145), height * rng.uniform(0.95, 1.05)),
                 angle=side * np.radians(rng.uniform(-4.0, 10.0)), side=side)
            for side in (-1, 1))
        lungs = (left, right)
        for lung in lungs:
            radius = _ellipse(grid, lung.centre, lung.axes, lung.angle)
            image -= np.clip((1.0 - radius) * LUNG_EDGE, 0.0, 1.0) * rng.uniform(0.25, 0.32)

        ribs = np.zeros_like(image)
        spacing = rng.uniform(0.075, 0.09)
        phase = rng.uniform(0.0, spacing)
        curve = (ys - 0.9 * (xs - 0.5) ** 2 - phase) / spacing
        ribs += np.clip(1.0 - np.abs(curve - np.round(curve)) * 5.0, 0.0, 1.0)
        image += ribs * rng.uniform(0.04, 0.07)

        inside_body = np.clip((1.0 - body) * 8.0, 0.0, 1.0)
        spine = np.exp(-(((xs - 0.5 - rng.uniform(-0.01, 0.01)) / 0.035) ** 2))
        image += spine * inside_body * rng.uniform(0.15, 0.22)
        heart = _ellipse(grid, (0.53 + rng.uniform(-0.02, 0.02), 0.7 + rng.uniform(-0.02, 0.02)),
                         (rng.uniform(0.14, 0.18), rng.uniform(0.12, 0.15)))
        image += np.clip((1.0 - heart) * 3.0, 0.0, 1.0) * rng.uniform(0.12, 0.18)

        image += (_smooth_noise(rng, size, 6) - 0.5) * 0.08
        image += (_smooth_noise(rng, size, max(4, size // 3)) - 0.5) * 0.05
        return image, lungs

    def _lesion(self, rng: np.random.Generator, kind: str, image: np.ndarray,
                grid: tuple[np.ndarray, np.ndarray], lungs: tuple[Lung, Lung],
                occupied: np.ndarray, used_regions: set[tuple[str, int]]
                ) -> tuple[np.ndarray, np.ndarray] | None:
        """(change to add (H, W), mask of changed pixels) for one lesion that overlaps no
        earlier one, or None when none fits."""
        size = self.image_size
        for _ in range(PLACEMENT_TRIES):
            lung = lungs[int(rng.integers(2))]
            inside = _ellipse(grid, lung.centre, lung.axes, lung.angle) < 1.0 - 1.0 / LUNG_EDGE
            if kind in REGIONAL:
                if (kind, lung.side) in used_regions:
                    continue
                if kind == "Effusion":
                    change, mask = self._effusion(rng, grid, lung, inside)
                else:
                    change, mask = self._pneumothorax(rng, image, grid, lung, inside)
            else:
                rows, columns = np.nonzero(inside)
                pick = int(rng.integers(len(rows)))
                centre = ((columns[pick] + 0.5) / size, (rows[pick] + 0.5) / size)
                change, mask = self._focal(rng, kind, grid, centre, inside)
            if not mask.any() or (mask & occupied).any():
                continue
            if kind in REGIONAL:
                used_regions.add((kind, lung.side))
            return change, mask
        return None

    def _focal(self, rng: np.random.Generator, kind: str, grid: tuple[np.ndarray, np.ndarray],
               centre: tuple[float, float], inside: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """A nodule, mass or consolidation centred at ``centre`` (unit coordinates)."""
        if kind == "Nodule":
            radius = max(rng.uniform(0.04, 0.055), 1.6 / self.image_size)
            distance = _ellipse(grid, centre, (radius, radius))
            profile = np.sqrt(np.clip(1.0 - distance ** 2, 0.0, 1.0))
            change = profile * rng.uniform(0.35, 0.45)
            mask = distance < 1.0
        elif kind == "Mass":
            distance = _blob_radius(rng, grid, centre, rng.uniform(0.08, 0.11), 0.18)
            profile = np.clip((1.0 - distance) * 4.0, 0.0, 1.0)
            change = profile * rng.uniform(0.28, 0.36)
            mask = distance < 1.0
        else:  # Consolidation: mottled patch, clipped to the lung
            distance = _blob_radius(rng, grid, centre, rng.uniform(0.09, 0.12), 0.12)
            mask = (distance < 1.0) & inside
            mottle = _smooth_noise(rng, self.image_size, max(6, self.image_size // 4))
            change = np.where(mask, 0.08 + 0.3 * mottle, 0.0)
        return np.where(mask, change, 0.0), mask

    def _effusion(self, rng: np.random.Generator, grid: tuple[np.ndarray, np.ndarray],
                  lung: Lung, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A bright band at the bottom of ``lung`` whose top rises towards the outer side."""
        xs, ys = grid
        bottom = lung.centre[1] + lung.axes[1]
        level = bottom - rng.uniform(0.28, 0.45) * 2 * lung.axes[1]
        outward = np.clip((xs - lung.centre[0]) * lung.side / lung.axes[0], 0.0, 1.0)
        boundary = level - rng.uniform(0.04, 0.08) * outward ** 2
        depth = ys - boundary
        mask = inside & (depth > 0)
        change = np.clip(depth / 0.04, 0.0, 1.0) * rng.uniform(0.3, 0.38)
        return np.where(mask, change, 0.0), mask

    def _pneumothorax(self, rng: np.random.Generator, image: np.ndarray,
                      grid: tuple[np.ndarray, np.ndarray], lung: Lung, inside: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        """A dark, texture-free crescent along the outer and upper edge of ``lung``, bounded
        by a thin bright line (the edge of the collapsed lung)."""
        shrink = rng.uniform(0.7, 0.82)
        shift = 1.0 - shrink
        inner_centre = (lung.centre[0] - lung.side * shift * lung.axes[0],
                        lung.centre[1] + shift * lung.axes[1])
        inner = _ellipse(grid, inner_centre, (lung.axes[0] * shrink, lung.axes[1] * shrink),
                         lung.angle)
        line_width = 1.2 / (self.image_size * lung.axes[0] * shrink)
        line = inside & (inner >= 1.0 - line_width) & (inner < 1.0)
        crescent = inside & (inner >= 1.0)
        dark = np.median(image[inside]) - rng.uniform(0.1, 0.14)
        change = np.where(crescent, dark - image, 0.0) + np.where(line, 0.18, 0.0)
        return change, crescent | line

    def _generate(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(grey uint8 (H, W), label (K,), boxes (N, 4), box labels (N,)), cached if enabled."""
        if index in self._cached:
            return self._cached[index]
        rendering = self.render(index)
        boxes = np.zeros((len(rendering.lesion_kinds), 4), dtype=np.float32)
        for row, mask in enumerate(rendering.lesion_masks):
            boxes[row] = box_from_mask(torch.from_numpy(mask))[0].numpy()
        item = (rendering.image, rendering.label, boxes, rendering.lesion_kinds)
        if self.cache:
            self._cached[index] = item
        return item

    def __getitem__(self, index: int) -> dict:
        grey, label, boxes, box_labels = self._generate(index)
        image = torch.from_numpy(grey).to(torch.float32).div(255.0)
        return {
            "image": image.unsqueeze(0).repeat(3, 1, 1),
            "label": torch.from_numpy(label.copy()),
            "index": index,
            "boxes": torch.from_numpy(boxes.copy()),
            "box_labels": torch.from_numpy(box_labels.copy()),
        }
