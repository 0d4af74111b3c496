"""A PNG grid of data set samples with their ground truth drawn over them.

Each tile shows one item letterboxed to ``tile_size`` pixels (nearest-neighbour, so the
pixels stay visible) under its class name, with every part mask as a translucent fill
and outline (or the object mask's outline when the set has no parts), part keypoints as
dots and the boxes as white rectangles; a legend of part names and colours runs along
the bottom.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

PART_COLOURS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
"""RGB overlay colour of part k (cycled): the "tab10" qualitative palette."""

FONT = cv2.FONT_HERSHEY_SIMPLEX
CAPTION_HEIGHT = 18
LEGEND_HEIGHT = 24
MARGIN = 4


def write_contact_sheet(
    dataset: Dataset,
    path: str | Path,
    *,
    count: int = 16,
    columns: int = 4,
    tile_size: int = 256,
    alpha: float = 0.35,
    indices: list[int] | None = None,
) -> Path:
    """Write a PNG contact sheet of ``dataset`` items and return its path.

    Args:
        dataset: items follow the data set contract (``image`` (C, H, W) in [0, 1],
            ``label``, optional ``part_masks``/``part_names``, ``part_keypoints``,
            ``object_mask``, ``boxes``); ``dataset.classes`` names the labels if present.
        path: output file (``.png``); parent folders are created.
        count: number of tiles (the first ``count`` items unless ``indices`` is given).
        columns: tiles per row.
        tile_size: side of each square tile in pixels.
        alpha: opacity of the part fills.
        indices: explicit item indices to show instead of the first ``count``.

    The sheet is ``columns * (tile_size + 4) + 4`` pixels wide and
    ``rows * (tile_size + 18 + 4) + 4 + 24`` high (tiles with captions, margins, legend).
    """
    if indices is None:
        indices = list(range(min(count, len(dataset))))
    if not indices:
        raise ValueError("write_contact_sheet: no items to show (empty data set or indices)")
    if columns < 1:
        raise ValueError(f"write_contact_sheet: columns must be >= 1, got {columns}")
    items = [dataset[i] for i in indices]
    part_names = tuple(items[0].get("part_names", ()))
    classes = getattr(dataset, "classes", None)
    tiles = [_tile(item, classes, tile_size, alpha) for item in items]

    rows = -(-len(tiles) // columns)
    cell_height = tile_size + CAPTION_HEIGHT + MARGIN
    sheet = np.full(
        (MARGIN + rows * cell_height + LEGEND_HEIGHT, MARGIN + columns * (tile_size + MARGIN), 3),
        32,
        dtype=np.uint8,
    )
    for k, tile in enumerate(tiles):
        top = MARGIN + (k // columns) * cell_height
        left = MARGIN + (k % columns) * (tile_size + MARGIN)
        sheet[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
    _legend(sheet, part_names, top=MARGIN + rows * cell_height)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"write_contact_sheet: OpenCV could not write {path}")
    return path


def _caption(label: object, classes: list[str] | None) -> str:
    if isinstance(label, torch.Tensor) and label.ndim == 1:
        positives = torch.nonzero(label > 0.5).flatten().tolist()
        names = [classes[i] if classes else str(i) for i in positives]
        return ", ".join(names) or "(none)"
    label = int(label)
    return classes[label] if classes else f"class {label}"


def _tile(item: dict, classes: list[str] | None, tile_size: int, alpha: float) -> np.ndarray:
    """One captioned tile (tile_size + CAPTION_HEIGHT, tile_size, 3) uint8 RGB."""
    image = item["image"].detach().cpu()
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    height, width = image.shape[1:]
    zoom = tile_size / max(height, width)
    size = (max(1, round(width * zoom)), max(1, round(height * zoom)))
    rgb = (image.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    canvas = cv2.resize(rgb, size, interpolation=cv2.INTER_NEAREST).astype(np.float32)

    def upsampled(mask: torch.Tensor) -> np.ndarray:
        small = mask.detach().cpu().numpy().astype(np.uint8)
        return cv2.resize(small, size, interpolation=cv2.INTER_NEAREST)

    outlines = []
    if "part_masks" in item:
        for k, mask in enumerate(item["part_masks"]):
            colour = np.array(PART_COLOURS[k % len(PART_COLOURS)], dtype=np.float32)
            big = upsampled(mask).astype(bool)
            canvas[big] = (1.0 - alpha) * canvas[big] + alpha * colour
            outlines.append((big, PART_COLOURS[k % len(PART_COLOURS)]))
    elif "object_mask" in item:
        outlines.append((upsampled(item["object_mask"]).astype(bool), (255, 255, 255)))
    canvas = canvas.round().astype(np.uint8)
    for mask, colour in outlines:
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(canvas, contours, -1, colour, 1)
    for y0, y1, x0, x1 in item.get("boxes", torch.zeros(0, 4)).tolist():
        corner0 = (round(x0 * zoom), round(y0 * zoom))
        corner1 = (round(x1 * zoom) - 1, round(y1 * zoom) - 1)
        cv2.rectangle(canvas, corner0, corner1, (255, 255, 255), 1)
    for k, (x, y, visible) in enumerate(item.get("part_keypoints", torch.zeros(0, 3)).tolist()):
        if visible > 0:
            centre = (round((x + 0.5) * zoom), round((y + 0.5) * zoom))
            cv2.circle(canvas, centre, 4, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(canvas, centre, 3, PART_COLOURS[k % len(PART_COLOURS)], -1, cv2.LINE_AA)

    tile = np.zeros((tile_size + CAPTION_HEIGHT, tile_size, 3), dtype=np.uint8)
    tile[CAPTION_HEIGHT : CAPTION_HEIGHT + canvas.shape[0], : canvas.shape[1]] = canvas
    text = _caption(item["label"], classes)
    cv2.putText(tile, text, (2, CAPTION_HEIGHT - 5), FONT, 0.38, (240, 240, 240), 1, cv2.LINE_AA)
    return tile


def _legend(sheet: np.ndarray, part_names: tuple[str, ...], top: int) -> None:
    """Colour swatch and name of every part along the bottom of ``sheet``, in place."""
    x = MARGIN
    for k, name in enumerate(part_names):
        colour = PART_COLOURS[k % len(PART_COLOURS)]
        cv2.rectangle(sheet, (x, top + 6), (x + 12, top + 18), colour, -1)
        cv2.putText(sheet, name, (x + 16, top + 17), FONT, 0.45, (240, 240, 240), 1, cv2.LINE_AA)
        x += 16 + cv2.getTextSize(name, FONT, 0.45, 1)[0][0] + 12
