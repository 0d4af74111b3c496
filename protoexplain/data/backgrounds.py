"""Procedural textured backgrounds and distractor shapes for generated images.

Both draw their colours from the same palette as the objects, so colour (or pattern)
seen outside the object is no evidence for the class. Sizes are given relative to a
64-pixel image and scale with ``size``.
"""

from __future__ import annotations

import cv2
import numpy as np

from protoexplain.data.shapes import (
    bar_polygons,
    ellipse_polygon,
    fill_mask,
    fill_polygon,
    rotate,
    spot_polygons,
)

TEXTURES = ("smooth", "stripes", "blobs", "mottled")
"""Background texture kinds, chosen uniformly per image."""

GRAIN_STD = 0.04
"""Standard deviation of the fine per-pixel grain added to every background ([0, 1] units)."""


def _muted(rng: np.random.Generator, colours: np.ndarray) -> np.ndarray:
    """Blend float colours (k, 3) towards a random grey so backgrounds are less saturated
    than objects but still overlap their hues."""
    grey = rng.uniform(0.3, 0.7)
    amount = rng.uniform(0.3, 0.6)
    return colours * (1.0 - amount) + grey * amount


def textured_background(rng: np.random.Generator, size: int, palette: np.ndarray) -> np.ndarray:
    """A random texture (size, size, 3) float32 in [0, 1].

    One of ``TEXTURES``: a smooth colour field, stripes at a random angle and period,
    blobs on a plain ground, or mottled low-frequency noise; all in three muted palette
    colours (``palette``: (k, 3) float in [0, 1]), plus fine grain.
    """
    kind = TEXTURES[rng.integers(len(TEXTURES))]
    colours = _muted(rng, palette[rng.permutation(len(palette))[:3]])
    unit = size / 64.0
    if kind == "smooth":
        grid = int(rng.integers(2, 6))
        field = colours[rng.integers(3, size=(grid, grid))].astype(np.float32)
        image = cv2.resize(field, (size, size), interpolation=cv2.INTER_LINEAR)
    elif kind == "stripes":
        angle = rng.uniform(0.0, np.pi)
        period = rng.uniform(4.0, 12.0) * unit
        ys, xs = np.mgrid[0:size, 0:size]
        phase = (xs * np.cos(angle) + ys * np.sin(angle)) / period
        image = np.where((phase % 1.0 < 0.5)[..., None], colours[0], colours[1])
    elif kind == "blobs":
        image = np.empty((size, size, 3), dtype=np.float32)
        image[:] = colours[0]
        for _ in range(int(rng.integers(15, 40))):
            centre = rng.uniform(0.0, size, 2)
            axes = rng.uniform(1.5, 5.0, 2) * unit
            blob = ellipse_polygon(centre, axes, rng.uniform(0.0, 180.0), 16)
            fill_polygon(image, blob, tuple(colours[1 + rng.integers(2)].tolist()))
    else:
        low = rng.random((max(2, size // 8), max(2, size // 8))).astype(np.float32)
        weight = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)[..., None]
        image = colours[0] + np.clip(weight, 0.0, 1.0) * (colours[1] - colours[0])
    grain = rng.normal(0.0, GRAIN_STD, (size, size, 1))
    return np.clip(image + grain, 0.0, 1.0).astype(np.float32)


def draw_distractor(
    rng: np.random.Generator,
    image: np.ndarray,
    palette: np.ndarray,
    *,
    extent: tuple[float, float],
    centre: tuple[float, float] | None = None,
) -> np.ndarray:
    """Paint one random shape onto ``image`` (size, size, 3) uint8, in place.

    The shape is an ellipse or a random star-shaped polygon whose half-size is
    ``extent`` (min, max) times the image size, filled with a palette colour
    (``palette``: (k, 3) uint8), plain or with bars or spots of a second palette colour.
    ``centre`` (x, y) defaults to a uniformly random point. Returns the bool mask of the
    painted pixels.
    """
    size = image.shape[0]
    if centre is None:
        centre = tuple(rng.uniform(0.0, size, 2))
    radius = rng.uniform(*extent) * size
    angle = rng.uniform(0.0, 360.0)
    if rng.random() < 0.5:
        outline = ellipse_polygon((0.0, 0.0), (radius, radius * rng.uniform(0.4, 1.0)))
    else:
        corners = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0.0, 2.0 * np.pi, corners))
        radii = radius * rng.uniform(0.5, 1.0, corners)
        outline = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    mask = fill_mask([rotate(outline, angle) + centre], size)
    colour, pattern_colour = palette[rng.permutation(len(palette))[:2]]
    image[mask] = colour
    pattern = rng.integers(3)
    if pattern == 1:
        local = bar_polygons(radius, radius, count=int(rng.integers(2, 5)))
    elif pattern == 2:
        local = spot_polygons(radius, radius, columns=int(rng.integers(2, 4)), radius=0.2 * radius)
    else:
        local = []
    if local:
        marks = fill_mask([rotate(p, angle) + centre for p in local], size) & mask
        image[marks] = pattern_colour
    return mask
