"""Polygon geometry and exact (non anti-aliased) rasterisation for generated images.

Shapes are polygons given as float arrays (n, 2) of (x, y) pixel coordinates, where the
integer point (x, y) is the centre of pixel row y, column x (OpenCV's convention).
Rasterising with ``cv2.fillPoly(..., lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)`` keeps
sub-pixel vertex precision without anti-aliasing, so a mask drawn from a polygon and a
colour fill drawn from the same polygon cover exactly the same pixels.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

SUBPIXEL_BITS = 4
"""Fixed-point fraction bits passed to OpenCV's ``shift`` (1/16 pixel vertex precision)."""


def ellipse_polygon(
    centre: tuple[float, float],
    axes: tuple[float, float],
    angle_deg: float = 0.0,
    vertices: int = 32,
) -> np.ndarray:
    """Polygon (vertices, 2) approximating an ellipse.

    ``axes`` are the semi-axes (along x, along y before rotation); ``angle_deg`` rotates
    the ellipse counter-clockwise in a y-down frame (i.e. clockwise on screen).
    """
    points = _unit_circle(vertices) * np.asarray(axes, dtype=np.float64)
    return rotate(points, angle_deg) + np.asarray(centre, dtype=np.float64)


@functools.lru_cache(maxsize=8)
def _unit_circle(vertices: int) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, vertices, endpoint=False)
    circle = np.stack([np.cos(t), np.sin(t)], axis=1)
    circle.flags.writeable = False
    return circle


def rotate(points: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate points (n, 2) about the origin by ``angle_deg`` (x towards y)."""
    cos, sin = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return points @ np.array([[cos, sin], [-sin, cos]])


def similarity_transform(
    points: np.ndarray,
    *,
    scale: float,
    angle_deg: float,
    flip: bool,
    translation: tuple[float, float],
) -> np.ndarray:
    """Map points (n, 2) from a canonical frame to the image: mirror in x if ``flip``,
    scale, rotate by ``angle_deg``, then translate."""
    mirrored = points * np.array([-1.0 if flip else 1.0, 1.0])
    return rotate(mirrored * scale, angle_deg) + np.asarray(translation, dtype=np.float64)


def fill_mask(polygons: list[np.ndarray], size: int) -> np.ndarray:
    """Rasterise the union of polygons (each (n, 2) float x, y) into a bool mask
    (size, size), without anti-aliasing."""
    canvas = np.zeros((size, size), dtype=np.uint8)
    for polygon in polygons:
        fill_polygon(canvas, polygon, 1)
    return canvas.view(bool)


def fill_polygon(canvas: np.ndarray, polygon: np.ndarray, value: float | tuple) -> None:
    """Paint one polygon ((n, 2) float x, y) onto ``canvas`` in place, without AA.

    One polygon per call: OpenCV fills several polygons of one call with the even-odd
    rule, which would leave their overlaps empty.
    """
    fixed_point = np.round(polygon * (1 << SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(canvas, [fixed_point], value, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)


def bar_polygons(
    half_length: float, half_width: float, count: int, fill_fraction: float = 0.5
) -> list[np.ndarray]:
    """Bars across a shape of extent [-half_length, half_length] x [-half_width, half_width].

    ``count`` bars perpendicular to the long (x) axis, equally spaced, each covering
    ``fill_fraction`` of its period. Canonical frame; clip by intersecting masks.
    """
    period = 2.0 * half_length / count
    bars = []
    for k in range(count):
        x0 = -half_length + (k + 0.5 * (1.0 - fill_fraction)) * period
        x1 = x0 + fill_fraction * period
        bars.append(
            np.array([[x0, -half_width], [x1, -half_width], [x1, half_width], [x0, half_width]])
        )
    return bars


def spot_polygons(
    half_length: float, half_width: float, columns: int, radius: float
) -> list[np.ndarray]:
    """Round spots in two staggered rows inside [-half_length, half_length] x
    [-half_width, half_width] (canonical frame), ``columns`` spots per row."""
    spacing = 2.0 * half_length / columns
    spots = []
    for row, y in enumerate((-0.4 * half_width, 0.4 * half_width)):
        for k in range(columns):
            x = -half_length + (k + 0.25 + 0.5 * row) * spacing
            spots.append(ellipse_polygon((x, y), (radius, radius), vertices=12))
    return spots
