"""A tiny CUB-200-2011 release written to disk, in the official formats, for tests.

``write_cub(tmp_path)`` writes ``CUB_200_2011/`` (metadata files, ``parts/``, JPEG images)
and, beside it, ``segmentations/`` (PNG masks), as the two official archives extract.
Each image is a dark, noisy background with one "bird": an ellipse filled with its class's
colour (cyan to blue) (so a small model can learn the classes), inside the annotated bounding box.
Its segmentation is the ellipse (255) with a ring of soft pixels (128) around it. Part
locations lie inside the ellipse; a few parts are invisible in every image. Two parts
are drawn as dots so tests can follow them through transforms: ``left eye`` in pure red and
``right eye`` in pure green (each a filled disc of radius :data:`DOT_RADIUS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

PART_NAMES = (
    "back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg",
    "left wing", "nape", "right eye", "right leg", "right wing", "tail", "throat",
)
"""The 15 parts of parts/parts.txt, in id order (ids 1..15)."""

DOT_RADIUS = 2
RED_PART = "left eye"
GREEN_PART = "right eye"


@dataclass
class FixtureImage:
    """What was written for one image (coordinates in the original image)."""

    image_id: int
    name: str
    label: int
    is_training: bool
    size: tuple[int, int]
    """(height, width)."""
    box: tuple[float, float, float, float]
    """x, y, width, height as in bounding_boxes.txt."""
    keypoints: np.ndarray
    """(15, 3) x, y, visible as in part_locs.txt."""
    segmentation: np.ndarray
    """uint8 (H, W) as written: 0, 128 (soft edge) or 255."""


@dataclass
class CUBFixture:
    """The written release: pass ``root`` to :class:`protoexplain.data.CUB200`."""

    root: Path
    segmentations: Path | None
    class_names: list[str]
    images: list[FixtureImage] = field(default_factory=list)


def _draw_bird(rng: np.random.Generator, size: tuple[int, int], colour: np.ndarray):
    height, width = size
    image = rng.integers(0, 40, size=(height, width, 3)).astype(np.uint8)
    box_w, box_h = int(rng.integers(width // 2, width - 8)), int(rng.integers(height // 2,
                                                                             height - 8))
    x0, y0 = int(rng.integers(2, width - box_w - 2)), int(rng.integers(2, height - box_h - 2))
    centre = (x0 + box_w // 2, y0 + box_h // 2)
    axes = (box_w // 2 - 2, box_h // 2 - 2)
    segmentation = np.zeros((height, width), np.uint8)
    cv2.ellipse(segmentation, centre, (axes[0] + 2, axes[1] + 2), 0, 0, 360, 128, -1)
    cv2.ellipse(segmentation, centre, axes, 0, 0, 360, 255, -1)
    image[segmentation == 255] = colour
    return image, (float(x0), float(y0), float(box_w), float(box_h)), centre, axes, segmentation


def write_cub(
    root: Path,
    *,
    num_classes: int = 3,
    train_per_class: int = 5,
    test_per_class: int = 2,
    segmentations: bool = True,
    seed: int = 0,
) -> CUBFixture:
    """Write a tiny CUB release under ``root`` and describe it (see the module docstring)."""
    rng = np.random.default_rng(seed)
    cub = root / "CUB_200_2011"
    (cub / "parts").mkdir(parents=True, exist_ok=True)
    seg_root = root / "segmentations" if segmentations else None
    class_names = [f"{c + 1:03d}.Bird_Species_{c + 1}" for c in range(num_classes)]
    # Hues from cyan to blue (OpenCV hue 95..145): far from the red and green dots.
    hues = [95 + int(50 * c / max(num_classes - 1, 1)) for c in range(num_classes)]
    colours = [cv2.cvtColor(np.uint8([[[h, 200, 230]]]), cv2.COLOR_HSV2BGR)[0, 0] for h in hues]
    fixture = CUBFixture(root=cub, segmentations=seg_root, class_names=class_names)
    red, green = PART_NAMES.index(RED_PART), PART_NAMES.index(GREEN_PART)
    image_id = 0
    for label, class_name in enumerate(class_names):
        (cub / "images" / class_name).mkdir(parents=True, exist_ok=True)
        if seg_root is not None:
            (seg_root / class_name).mkdir(parents=True, exist_ok=True)
        for k in range(train_per_class + test_per_class):
            image_id += 1
            size = (int(rng.integers(56, 80)), int(rng.integers(64, 96)))
            image, box, centre, axes, segmentation = _draw_bird(rng, size, colours[label])
            keypoints = np.zeros((len(PART_NAMES), 3))
            for part in range(len(PART_NAMES)):
                if part in (PART_NAMES.index("left leg"), PART_NAMES.index("tail")):
                    continue  # invisible in every image
                angle = rng.uniform(0, 2 * np.pi)
                radius = rng.uniform(0.0, 0.6)
                keypoints[part] = (round(centre[0] + radius * axes[0] * np.cos(angle)),
                                   round(centre[1] + radius * axes[1] * np.sin(angle)), 1)
            keypoints[green, :2] = keypoints[red, :2] + (0, 6 if keypoints[red, 1] < centre[1]
                                                         else -6)
            for part, colour in ((red, (0, 0, 255)), (green, (0, 255, 0))):
                x, y = int(keypoints[part, 0]), int(keypoints[part, 1])
                cv2.circle(image, (x, y), DOT_RADIUS, colour, -1)
            name = f"{class_name}/{class_name.split('.')[1]}_{image_id:04d}.jpg"
            cv2.imwrite(str(cub / "images" / name), image, [cv2.IMWRITE_JPEG_QUALITY, 98])
            if seg_root is not None:
                cv2.imwrite(str((seg_root / name).with_suffix(".png")), segmentation)
            fixture.images.append(FixtureImage(
                image_id=image_id, name=name, label=label, is_training=k < train_per_class,
                size=size, box=box, keypoints=keypoints, segmentation=segmentation))

    def write(path: Path, lines: list[str]) -> None:
        path.write_text("".join(line + "\n" for line in lines))

    write(cub / "images.txt", [f"{im.image_id} {im.name}" for im in fixture.images])
    write(cub / "classes.txt", [f"{i + 1} {n}" for i, n in enumerate(class_names)])
    write(cub / "image_class_labels.txt",
          [f"{im.image_id} {im.label + 1}" for im in fixture.images])
    write(cub / "train_test_split.txt",
          [f"{im.image_id} {int(im.is_training)}" for im in fixture.images])
    write(cub / "bounding_boxes.txt",
          [f"{im.image_id} " + " ".join(f"{v:.1f}" for v in im.box) for im in fixture.images])
    write(cub / "parts" / "parts.txt", [f"{i + 1} {n}" for i, n in enumerate(PART_NAMES)])
    write(cub / "parts" / "part_locs.txt",
          [f"{im.image_id} {p + 1} {im.keypoints[p, 0]:.1f} {im.keypoints[p, 1]:.1f} "
           f"{int(im.keypoints[p, 2])}" for im in fixture.images for p in range(len(PART_NAMES))])
    return fixture
