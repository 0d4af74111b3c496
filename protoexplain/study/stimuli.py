"""The pictures of a study: one PNG per trial, drawn with the report's tiles
(:mod:`protoexplain.report.pictures`), the same layout under every condition.

Under a localization condition a prototype's evidence is the method's map and box over the
test image next to the same method's map and box over the prototype's source training image;
under ``random`` the ``random`` method draws them (a sanity check); under ``none`` both images
are shown plain, so that only the explanation differs between conditions. The similarity task
shows the regions inside the boxes (whole images under ``none``). Class names never appear:
classes are ``Class A``, ``Class B``, ... Every picture of one task is padded (white) to the
same size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from protoexplain.report.pictures import crop_tile, image_tile, map_tile
from protoexplain.study.config import NO_EXPLANATION
from protoexplain.visualize import caption, hstack, vstack

Localized = dict[tuple[int, int], dict[str, tuple[torch.Tensor, list[int]]]]
"""(image index, prototype) -> {method: (map (H, W) on the CPU, box [y0, y1, x0, x1])}."""
GAP = 8


class Painter:
    """Draws the tiles of one condition from the localized (image, prototype) pairs of the
    test images and of the prototypes' source images."""

    def __init__(self, test_image: Callable[[int], torch.Tensor],
                 source_image: Callable[[int], torch.Tensor], sources: dict[int, int],
                 test_found: Localized, source_found: Localized, tile: int) -> None:
        self.test_image, self.source_image = test_image, source_image
        self.sources, self.tile = sources, tile
        self.test_found, self.source_found = test_found, source_found

    def _evidence(self, image: torch.Tensor, found: dict[str, tuple], condition: str
                  ) -> np.ndarray:
        if condition == NO_EXPLANATION:
            return image_tile(image, target=self.tile)
        heatmap, box = found[condition]
        return map_tile(image, heatmap, box, target=self.tile)

    def _region(self, image: torch.Tensor, found: dict[str, tuple], condition: str
                ) -> np.ndarray:
        if condition == NO_EXPLANATION:
            return image_tile(image, target=self.tile)
        return crop_tile(image, found[condition][1], target=self.tile)

    def _found(self, index: int, source: int, prototype: int) -> tuple[dict, dict]:
        """The maps and boxes by method of the pair in the test image and in the source
        (empty under ``none``, where nothing is localized)."""
        return (self.test_found.get((index, prototype), {}),
                self.source_found.get((source, prototype), {}))

    def pair(self, index: int, prototype: int, condition: str) -> np.ndarray:
        """The test image's evidence for ``prototype`` next to the prototype's source."""
        source = self.sources[prototype]
        in_test, in_source = self._found(index, source, prototype)
        return hstack([
            caption(self._evidence(self.test_image(index), in_test, condition), "this image"),
            caption(self._evidence(self.source_image(source), in_source, condition),
                    "prototype")], gap=2)

    def regions(self, index: int, prototype: int, condition: str) -> np.ndarray:
        """The region of the test image and the region of the prototype's source."""
        source = self.sources[prototype]
        in_test, in_source = self._found(index, source, prototype)
        return hstack([
            caption(self._region(self.test_image(index), in_test, condition), "image region"),
            caption(self._region(self.source_image(source), in_source, condition),
                    "prototype region")], gap=2)

    def test_tile(self, index: int, title: str) -> np.ndarray:
        return caption(image_tile(self.test_image(index), target=self.tile), title)

    def evidence_row(self, index: int, prototypes: Sequence[int], condition: str,
                     title: str) -> np.ndarray:
        return caption(hstack([self.pair(index, p, condition) for p in prototypes],
                              gap=GAP), title, height=22)


def distinction_picture(painter: Painter, index: int, classes: Sequence[tuple[str, list[int]]],
                        condition: str) -> np.ndarray:
    """The test image, then one row per candidate class (label, its prototypes in the order
    shown)."""
    rows = [painter.test_tile(index, "test image")]
    rows += [painter.evidence_row(index, prototypes, condition, f"Class {label}")
             for label, prototypes in classes]
    return _spaced(rows)


def agreement_picture(painter: Painter, index: int, prototypes: Sequence[int],
                      condition: str) -> np.ndarray:
    """The test image and the evidence of the predicted class."""
    return _spaced([painter.test_tile(index, "test image"),
                    painter.evidence_row(index, prototypes, condition,
                                         "the predicted class: its prototypes")])


def similarity_picture(painter: Painter, index: int, prototypes: Sequence[int],
                       condition: str) -> np.ndarray:
    """One pair of regions (pairwise), or two pairs side by side, ``left`` and ``right``
    (comparative)."""
    if len(prototypes) == 1:
        return painter.regions(index, prototypes[0], condition)
    return hstack([caption(painter.regions(index, p, condition), side, height=22)
                   for side, p in zip(("left", "right"), prototypes, strict=True)], gap=3 * GAP)


def _spaced(rows: Sequence[np.ndarray]) -> np.ndarray:
    gap = np.full((GAP, 1, 3), 255, np.uint8)
    spaced = [part for row in rows for part in (row, gap)][:-1]
    return vstack(spaced)


def pad_to(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``rgb`` in the top left of a white (height, width) canvas."""
    canvas = np.full((height, width, 3), 255, np.uint8)
    canvas[:rgb.shape[0], :rgb.shape[1]] = rgb
    return canvas


def encode_png(rgb: np.ndarray) -> bytes:
    """An RGB array as PNG bytes."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("could not encode a stimulus as PNG")
    return encoded.tobytes()
