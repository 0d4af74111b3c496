"""Pictures a person can open: heat-map overlays, boxes and labelled panels as PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from protoexplain.atomic_io import atomic_write_bytes

BOX_COLOUR = (255, 255, 0)  # RGB yellow, as the original's high-activation boxes
FIELD_COLOUR = (0, 255, 255)  # RGB cyan for receptive fields


def to_rgb_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) float in [0, 1] (C = 1 or 3) to an (H, W, 3) uint8 RGB array."""
    array = image.detach().float().clamp(0, 1).cpu().numpy()
    if array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    return np.ascontiguousarray((array.transpose(1, 2, 0) * 255).round().astype(np.uint8))


def overlay_heatmap(rgb: np.ndarray, heatmap: torch.Tensor, weight: float = 0.4) -> np.ndarray:
    """Blend a JET-coloured (H, W) map in [0, 1] over an RGB image."""
    values = (heatmap.detach().float().clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
    coloured = cv2.cvtColor(cv2.applyColorMap(values, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1 - weight, coloured, weight, 0)


def enlarge(rgb: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so small images stay crisp."""
    if scale == 1:
        return rgb
    return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def draw_box(rgb: np.ndarray, box: Sequence[float], colour=BOX_COLOUR, scale: int = 1,
             thickness: int = 1) -> np.ndarray:
    """Draw an end-exclusive (y0, y1, x0, x1) box, given in unscaled pixels."""
    y0, y1, x0, x1 = (int(round(v * scale)) for v in box)
    out = rgb.copy()
    cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, thickness)
    return out


def caption(rgb: np.ndarray, text: str, height: int = 18) -> np.ndarray:
    """Add a white strip with ``text`` above an image."""
    strip = np.full((height, rgb.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (3, height - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.concatenate([strip, rgb], axis=0)


def hstack(tiles: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Place equally tall tiles side by side with white gaps."""
    height = max(tile.shape[0] for tile in tiles)
    spacer = np.full((height, gap, 3), 255, np.uint8)
    row = []
    for tile in tiles:
        pad = np.full((height - tile.shape[0], tile.shape[1], 3), 255, np.uint8)
        row.extend([np.concatenate([tile, pad], axis=0), spacer])
    return np.concatenate(row[:-1], axis=1)


def vstack(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Stack picture rows of different widths top to bottom, padding each on the right with
    white."""
    width = max(row.shape[1] for row in rows)
    padded = [np.concatenate([row, np.full((row.shape[0], width - row.shape[1], 3), 255,
                                           np.uint8)], axis=1) for row in rows]
    return np.concatenate(padded, axis=0)


def receptive_field_tile(image: torch.Tensor, box: Sequence[float], title: str, *, scale: int,
                         colour: tuple[int, int, int] = FIELD_COLOUR) -> np.ndarray:
    """A prototype's source image enlarged ``scale`` times, with the (y0, y1, x0, x1) box of
    its latent patch's receptive field (unscaled pixels, 2 px thick) and ``title`` above."""
    tile = draw_box(enlarge(to_rgb_uint8(image), scale), box, colour, scale, 2)
    return caption(tile, title)


def localization_tiles(image: torch.Tensor, maps: dict[str, tuple[torch.Tensor, Sequence]],
                       *, scale: int) -> list[np.ndarray]:
    """One captioned tile per method: the map over the image with its box."""
    rgb = to_rgb_uint8(image)
    tiles = []
    for name, (heatmap, box) in maps.items():
        tile = enlarge(overlay_heatmap(rgb, heatmap), scale)
        tiles.append(caption(draw_box(tile, box, scale=scale, thickness=2), name))
    return tiles


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB array as PNG (atomically)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode {path} as PNG")
    return atomic_write_bytes(path, lambda stream: stream.write(encoded.tobytes()))


def display_scale(image_size: int, target: int = 192) -> int:
    """An integer enlargement that brings small images to about ``target`` pixels."""
    return max(1, round(target / image_size))
