"""The pictures of a report: one PNG per prototype in the run directory, and the small JPEG
tiles (thumbnails) of the HTML site.

Tiles are drawn at about :data:`THUMBNAIL` pixels: small images are enlarged by an integer
factor (nearest neighbour, so pixels stay crisp), large ones shrunk (area averaging), and
boxes are drawn after scaling so that they stay thin and sharp. JPEG keeps a CUB-size report
(tens of thousands of tiles) small; the boxes' colours survive its compression.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from protoexplain.visualize import (
    BOX_COLOUR,
    FIELD_COLOUR,
    display_scale,
    draw_box,
    hstack,
    localization_tiles,
    overlay_heatmap,
    receptive_field_tile,
    to_rgb_uint8,
    write_png,
)
from prototypes import ProjectionRecord

PICTURE_DIR = "prototypes"
THUMBNAIL = 128
"""Target side of a tile, in pixels."""
TRUTH_COLOUR = (0, 220, 0)
"""RGB green: ground-truth finding boxes."""
JPEG_QUALITY = 85


def write_prototype_pictures(run_dir: Path, dataset: Dataset, records: list[ProjectionRecord],
                             localizations: dict[str, dict[str, Any]],
                             class_names: list[str], *, progress: bool = True) -> list[str]:
    """For each prototype: its source image with the receptive field, then one panel per
    localization method (map overlay and high-activation box), as one PNG in
    ``run_dir/prototypes/``. Returns relative paths."""
    paths = []
    for position, record in enumerate(tqdm(records, desc="prototype pictures",
                                           disable=not progress)):
        image = dataset[record.sample_index]["image"]
        scale = display_scale(image.shape[-1])
        source = receptive_field_tile(image, record.receptive_field_box,
                                      f"p{record.prototype} {class_names[record.class_index]}",
                                      scale=scale)
        maps = {name: (found["maps"][position], found["boxes"][position].tolist())
                for name, found in localizations.items()}
        tiles = [source] + localization_tiles(image, maps, scale=scale)
        relative = f"{PICTURE_DIR}/prototype_{record.prototype:04d}.png"
        write_png(run_dir / relative, hstack(tiles))
        paths.append(relative)
    return paths


def tile_scale(size: int, target: int = THUMBNAIL) -> float:
    """The factor that brings an image side of ``size`` pixels to about ``target``: an integer
    enlargement for small images, a shrinking factor for large ones."""
    if size <= target:
        return float(display_scale(size, target))
    return target / size


def _resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1:
        return rgb
    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA
    return cv2.resize(rgb, size, interpolation=interpolation)


def _boxes(rgb: np.ndarray, boxes: Sequence[tuple[Sequence[float], tuple[int, int, int]]],
           scale: float) -> np.ndarray:
    thickness = 2 if min(rgb.shape[:2]) >= 96 else 1
    for box, colour in boxes:
        rgb = draw_box(rgb, box, colour, scale, thickness)
    return rgb


def image_tile(image: torch.Tensor, *, heatmap: torch.Tensor | None = None,
               boxes: Sequence[tuple[Sequence[float], tuple[int, int, int]]] = (),
               target: int = THUMBNAIL) -> np.ndarray:
    """An image (C, H, W) in [0, 1] at tile size, with an optional JET ``heatmap`` (H, W) in
    [0, 1] over it and ``boxes`` given as ((y0, y1, x0, x1) in image pixels, RGB colour)."""
    rgb = to_rgb_uint8(image)
    if heatmap is not None:
        rgb = overlay_heatmap(rgb, heatmap)
    scale = tile_scale(max(rgb.shape[:2]), target)
    return _boxes(_resize(rgb, scale), boxes, scale)


def crop_tile(image: torch.Tensor, box: Sequence[float], target: int = THUMBNAIL) -> np.ndarray:
    """The (y0, y1, x0, x1) region of an image (C, H, W), scaled so that its longer side is
    about ``target`` pixels: the patch a prototype stands for."""
    rgb = to_rgb_uint8(image)
    y0, y1, x0, x1 = (int(v) for v in box)
    region = rgb[max(0, y0):max(y0 + 1, y1), max(0, x0):max(x0 + 1, x1)]
    if region.size == 0:
        region = rgb
    return np.ascontiguousarray(_resize(region, tile_scale(max(region.shape[:2]), target)))


def source_tile(image: torch.Tensor, receptive_field: Sequence[float],
                truth: Sequence[Sequence[float]] = (), target: int = THUMBNAIL) -> np.ndarray:
    """A prototype's source image with the receptive field of its patch (cyan) and the
    ground-truth boxes of its class (green), if any."""
    boxes = [(box, TRUTH_COLOUR) for box in truth] + [(receptive_field, FIELD_COLOUR)]
    return image_tile(image, boxes=boxes, target=target)


def map_tile(image: torch.Tensor, heatmap: torch.Tensor, box: Sequence[float],
             truth: Sequence[Sequence[float]] = (), target: int = THUMBNAIL) -> np.ndarray:
    """A localization: the map over the image with its high-activation box (yellow) and the
    ground-truth boxes (green), if any."""
    boxes = [(b, TRUTH_COLOUR) for b in truth] + [(box, BOX_COLOUR)]
    return image_tile(image, heatmap=heatmap, boxes=boxes, target=target)


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = JPEG_QUALITY) -> int:
    """Write an RGB array as JPEG (parents created); returns its size in bytes."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"could not encode {path} as JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encoded.tobytes()
    path.write_bytes(data)
    return len(data)
