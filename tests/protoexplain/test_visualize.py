"""Picture helpers: RGB conversion, enlargement, boxes, captions, tiling and PNG files."""

import cv2
import numpy as np
import torch

from protoexplain.visualize import (
    BOX_COLOUR,
    FIELD_COLOUR,
    caption,
    display_scale,
    draw_box,
    enlarge,
    hstack,
    localization_tiles,
    overlay_heatmap,
    receptive_field_tile,
    to_rgb_uint8,
    vstack,
    write_png,
)


def _tile(height, width, value):
    return np.full((height, width, 3), value, np.uint8)


def test_to_rgb_rounds_clamps_and_repeats_a_single_channel():
    image = torch.tensor([[[0.0, 0.5], [1.0, 2.0]]])  # (1, 2, 2), one value out of range
    rgb = to_rgb_uint8(image)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[..., 0].tolist() == [[0, 128], [255, 255]]
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    colour = to_rgb_uint8(torch.tensor([1.0, 0.0, 0.2])[:, None, None].expand(3, 2, 2))
    assert colour[1, 1].tolist() == [255, 0, 51]


def test_enlarge_repeats_each_pixel_and_scale_one_is_the_identity():
    rgb = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    big = enlarge(rgb, 3)
    assert big.shape == (6, 6, 3)
    assert (big[:3, :3] == rgb[0, 0]).all() and (big[3:, 3:] == rgb[1, 1]).all()
    assert enlarge(rgb, 1) is rgb


def test_draw_box_marks_the_end_exclusive_box_edges_at_scale_on_a_copy():
    rgb = _tile(20, 20, 0)
    boxed = draw_box(rgb, (1, 4, 2, 5), scale=2)  # pixels y 2..7, x 4..9 after scaling
    assert (rgb == 0).all()  # the input is left alone
    assert tuple(boxed[2, 4]) == BOX_COLOUR and tuple(boxed[7, 9]) == BOX_COLOUR
    assert tuple(boxed[5, 4]) == BOX_COLOUR  # left edge
    assert (boxed[5, 6] == 0).all() and (boxed[8, 10] == 0).all()  # inside, and outside


def test_caption_adds_a_white_strip_with_dark_text_above():
    captioned = caption(_tile(10, 60, 0), "p1 wren")
    assert captioned.shape == (28, 60, 3)
    strip = captioned[:18]
    assert (strip[0] == 255).all() and strip.min() < 128  # white, with text drawn
    assert (captioned[18:] == 0).all()


def test_hstack_pads_short_tiles_with_white_and_separates_them_by_a_gap():
    row = hstack([_tile(4, 3, 0), _tile(2, 5, 10)], gap=2)
    assert row.shape == (4, 10, 3)
    assert (row[:, :3] == 0).all() and (row[:, 3:5] == 255).all()
    assert (row[:2, 5:] == 10).all() and (row[2:, 5:] == 255).all()


def test_vstack_pads_narrow_rows_on_the_right_with_white():
    picture = vstack([_tile(2, 5, 0), _tile(3, 2, 10)])
    assert picture.shape == (5, 5, 3)
    assert (picture[:2] == 0).all()
    assert (picture[2:, :2] == 10).all() and (picture[2:, 2:] == 255).all()


def test_receptive_field_tile_shows_the_enlarged_image_its_box_and_a_title():
    image = torch.zeros(3, 8, 8)
    tile = receptive_field_tile(image, (2, 6, 2, 6), "p0 wren", scale=2)
    assert tile.shape == (18 + 16, 16, 3)
    assert tuple(tile[18 + 4, 4]) == FIELD_COLOUR and tuple(tile[18 + 5, 5]) == FIELD_COLOUR
    assert (tile[18 + 8, 8] == 0).all()  # inside the 2 px thick box: the image
    yellow = receptive_field_tile(image, (2, 6, 2, 6), "p0", scale=2, colour=BOX_COLOUR)
    assert tuple(yellow[18 + 4, 4]) == BOX_COLOUR


def test_localization_tiles_give_one_captioned_overlay_per_method_in_order():
    image = torch.zeros(3, 8, 8)
    maps = {"upsample": (torch.zeros(8, 8), [0, 4, 0, 4]),
            "hdm": (torch.ones(8, 8), [4, 8, 4, 8])}
    tiles = localization_tiles(image, maps, scale=2)
    assert [t.shape for t in tiles] == [(34, 16, 3), (34, 16, 3)]
    assert tuple(tiles[0][18, 0]) == BOX_COLOUR and tuple(tiles[1][18 + 8, 8]) == BOX_COLOUR
    # a map of ones is JET's dark red over the black image, zeros its dark blue
    assert tiles[1][18 + 2, 2, 0] > tiles[1][18 + 2, 2, 2]
    assert tiles[0][18 + 12, 12, 2] > tiles[0][18 + 12, 12, 0]


def test_overlay_of_weight_zero_keeps_the_image():
    rgb = _tile(4, 4, 77)
    assert (overlay_heatmap(rgb, torch.rand(4, 4), weight=0.0) == 77).all()


def test_png_round_trip_keeps_rgb_order(tmp_path):
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0] = 200  # red
    path = write_png(tmp_path / "sub" / "red.png", rgb)
    assert path == tmp_path / "sub" / "red.png"
    back = cv2.imread(str(path))  # BGR
    assert back.shape == (3, 4, 3) and (back[..., 2] == 200).all() and (back[..., 0] == 0).all()


def test_display_scale_brings_small_images_to_about_192_pixels():
    assert [display_scale(s) for s in (16, 32, 64, 100, 224, 500)] == [12, 6, 3, 2, 1, 1]
