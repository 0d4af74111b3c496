"""Polygon geometry and exact rasterisation for the generated data sets."""

import numpy as np
import pytest

from protoexplain.data.shapes import (
    bar_polygons,
    ellipse_polygon,
    fill_mask,
    fill_polygon,
    rotate,
    similarity_transform,
    spot_polygons,
)


def test_rotation_turns_x_towards_y_and_the_transform_mirrors_scales_rotates_then_moves():
    assert rotate(np.array([[1.0, 0.0]]), 90) == pytest.approx(np.array([[0.0, 1.0]]))
    moved = similarity_transform(np.array([[1.0, 2.0]]), scale=2.0, angle_deg=0.0, flip=True,
                                 translation=(10.0, 20.0))
    assert moved == pytest.approx(np.array([[8.0, 24.0]]))


def test_an_ellipse_has_its_vertices_on_the_axes_around_its_centre():
    polygon = ellipse_polygon((5.0, 6.0), (3.0, 1.0), vertices=4)
    assert polygon == pytest.approx(np.array([[8, 6], [5, 7], [2, 6], [5, 5]]))


def test_a_filled_square_covers_exactly_the_pixels_inside_its_centres():
    square = np.array([[2.0, 1.0], [5.0, 1.0], [5.0, 3.0], [2.0, 3.0]])
    mask = fill_mask([square], 8)
    assert mask.dtype == bool
    assert np.argwhere(mask).tolist() == [[y, x] for y in (1, 2, 3) for x in (2, 3, 4, 5)]
    canvas = np.zeros((8, 8, 3), np.uint8)
    fill_polygon(canvas, square, (9, 8, 7))
    assert (canvas[mask] == (9, 8, 7)).all() and (canvas[~mask] == 0).all()


def test_overlapping_polygons_fill_their_union():
    left = np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 3.0], [0.0, 3.0]])
    mask = fill_mask([left, left + 2.0], 8)
    assert mask[2, 2] and mask[3, 3] and mask[5, 5]  # the overlap stays filled
    assert int(mask.sum()) == 16 + 16 - 4


def test_bars_and_spots_are_evenly_spaced_inside_the_shape():
    bars = bar_polygons(4.0, 1.0, count=2, fill_fraction=0.5)
    assert [bar[:, 0].min() for bar in bars] == pytest.approx([-3.0, 1.0])
    assert [bar[:, 0].max() for bar in bars] == pytest.approx([-1.0, 3.0])
    spots = spot_polygons(4.0, 1.0, columns=2, radius=0.3)
    assert len(spots) == 4
    centres = [spot.mean(axis=0) for spot in spots]
    # the second row is shifted by half the spacing of 4
    assert [tuple(np.round(c, 6)) for c in centres] == [(-3.0, -0.4), (1.0, -0.4),
                                                         (-1.0, 0.4), (3.0, 0.4)]
