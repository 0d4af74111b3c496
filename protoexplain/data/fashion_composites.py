"""Fashion-MNIST objects pasted onto real textures, with exact object masks.

Objects are the real Fashion-MNIST images (Zalando, MIT licence) from Debian's
``dataset-fashion-mnist`` package (``apt-get install dataset-fashion-mnist``, which installs
the four gzipped IDX files in :data:`FASHION_MNIST_DIR`). Backgrounds are random crops of
scikit-image's CC0 texture photographs ``brick``, ``grass`` and ``gravel``. Because every
composite is generated here, its object mask is exact: the mask is the set of pixels the
object was painted on, and nothing else differs from the background.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import skimage.data
import torch
from torch.utils.data import Dataset

from protoexplain.data.ground_truth import box_from_mask, keypoints_from_masks
from protoexplain.data.splits import (
    SPLITS,
    check_fraction,
    check_split,
    split_sample_count,
    stratified_split,
)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` installs the IDX files."""

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
"""Label names in label order (Fashion-MNIST README)."""

OFFICIAL_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""Official images and labels files of each official part, without the ``.gz`` suffix."""

TEXTURES = ("brick", "grass", "gravel")
"""scikit-image texture photographs (grey, 512 x 512, CC0) used as backgrounds."""

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


GRID_NAMES = {3: (("top", "middle", "bottom"), ("left", "centre", "right"))}
"""Row and column names of the 3 x 3 grid parts."""


def grid_part_names(grid: int) -> tuple[str, ...]:
    """Names of the ``grid`` x ``grid`` parts, row-major: ``"top-left"`` ... for 3, else
    ``"r0c0"`` ..."""
    if grid in GRID_NAMES:
        rows, columns = GRID_NAMES[grid]
        return tuple(f"{row}-{column}" for row in rows for column in columns)
    return tuple(f"r{i}c{j}" for i in range(grid) for j in range(grid))


def grid_cells(size: int, top: int, left: int, side: int, grid: int,
               flipped: bool) -> torch.Tensor:
    """bool (grid * grid, size, size): the cells of a ``grid`` x ``grid`` division of the
    pasted ``side`` x ``side`` object frame at (top, left), row-major in the *source* frame's
    columns (a horizontally flipped object keeps its part names: the sleeve that was on the
    left is still ``*-left``)."""
    edges = [round(side * k / grid) for k in range(grid + 1)]
    cells = torch.zeros(grid * grid, size, size, dtype=torch.bool)
    for i in range(grid):
        for j in range(grid):
            column = grid - 1 - j if flipped else j
            cells[i * grid + j, top + edges[i]:top + edges[i + 1],
                  left + edges[column]:left + edges[column + 1]] = True
    return cells


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a numpy array in native byte order.

    Format (LeCun's MNIST page): two zero bytes, a type byte (0x08 unsigned byte, 0x09 signed
    byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), a byte giving the number of
    dimensions, one big-endian uint32 per dimension, then the big-endian data.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"IDX file not found: {path}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"corrupt gzip data in IDX file {path}: {error}") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_TYPES:
        raise ValueError(f"not an IDX file: {path} (starts with bytes {raw[:4].hex() or 'none'})")
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {path} is truncated inside its header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(
            f"IDX file {path} holds {len(raw) - header} data bytes but its dimensions {dims} "
            f"need {count * dtype.itemsize}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header)
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def _idx_path(root: Path, name: str) -> Path:
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {root / (name + '.gz')} not found. Install Debian's data with "
        f"'apt-get install dataset-fashion-mnist' (files land in {FASHION_MNIST_DIR}) or pass "
        f"root= the folder holding the official IDX files"
    )


@lru_cache(maxsize=2)
def _official_part(root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Read-only (images (n, 28, 28) uint8, labels (n,) int64) of an official part."""
    images_file, labels_file = (_idx_path(root, name) for name in OFFICIAL_FILES[part])
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{images_file}: expected uint8 images (n, rows, cols), got "
                         f"{images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{labels_file}: expected {len(images)} labels, got shape {labels.shape}")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{labels_file}: labels must lie in 0..{len(FASHION_MNIST_CLASSES) - 1}")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@lru_cache(maxsize=1)
def _textures() -> tuple[np.ndarray, ...]:
    """The texture photographs as float32 (512, 512) in [0, 1]."""
    return tuple(getattr(skimage.data, name)().astype(np.float32) / 255.0 for name in TEXTURES)


def paste_object(
    background: np.ndarray,
    intensity: np.ndarray,
    top: int,
    left: int,
    colour: Sequence[float],
    *,
    threshold: float,
    min_opacity: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Paint a grey object onto ``background``; return (image, object mask).

    ``background``: float (H, W, 3) in [0, 1]; ``intensity``: float (h, w) in [0, 1], placed
    with its top-left pixel at (``top``, ``left``) and fully inside. The object's pixels are
    those with intensity above ``threshold``: exactly there, and nowhere else, the image is
    ``alpha * colour * intensity + (1 - alpha) * background`` with opacity
    ``alpha = min_opacity + (1 - min_opacity) * intensity``, so the object keeps its shading
    and stays visible where it is dark.
    """
    height, width = intensity.shape
    if top < 0 or left < 0 or top + height > background.shape[0] or \
            left + width > background.shape[1]:
        raise ValueError(f"a {height}x{width} object at ({top}, {left}) does not fit in a "
                         f"{background.shape[0]}x{background.shape[1]} background")
    mask = np.zeros(background.shape[:2], dtype=bool)
    mask[top : top + height, left : left + width] = intensity > threshold
    alpha = np.zeros(background.shape[:2], dtype=np.float32)
    alpha[top : top + height, left : left + width] = min_opacity + (1 - min_opacity) * intensity
    alpha *= mask
    layer = np.zeros_like(background)
    layer[top : top + height, left : left + width] = \
        intensity[:, :, None] * np.asarray(colour, dtype=np.float32)
    image = np.where(mask[:, :, None],
                     alpha[:, :, None] * layer + (1 - alpha[:, :, None]) * background,
                     background)
    return image.astype(np.float32), mask


class FashionComposites(Dataset):
    """Fashion-MNIST objects on textured backgrounds, with exact object masks and boxes.

    ``root``: the folder of the four official IDX files (gzipped or not); None means
    :data:`FASHION_MNIST_DIR`.

    Splits: ``train`` and ``val`` divide the official 60,000 training images (``val_fraction``
    of each class held out, see :func:`~protoexplain.data.splits.stratified_split`); ``test``
    uses the official 10,000 test images. Item ``i`` shows the object ``source_indices[i]``
    (an index into the official part) and is generated from ``(seed, split, i)`` alone, so it
    is the same whatever the order of access or the worker process. ``num_samples`` (a count,
    or a mapping from split name to count; default: one item per object of the split) takes
    objects in a seeded random order, starting over (on new backgrounds and positions) when it
    exceeds the split's objects.

    Generation of one item (image side S = ``image_size``):

    - background: one of :data:`TEXTURES`, a random square crop of side uniform in
      [S, 4S] (capped at 512), turned by a multiple of 90 degrees, resized to S x S, multiplied
      by a dull random colour (each channel uniform in [0.3, 0.75]);
    - object: the 28 x 28 Fashion-MNIST image, mirrored with probability 1/2 when ``mirror``
      is True (the draw is made either way, so both settings give the same backgrounds,
      sizes, positions and colours), resized to a square of side ``object_scale`` x S
      (uniform in the given range), placed uniformly inside the frame and painted with
      :func:`paste_object` in a bright random colour (channels uniform in [0.6, 1]), or
      white-to-grey when ``colour`` is False. ``mirror=False`` shows every object in
      Fashion-MNIST's own pose (garments from the front, shoes pointing left), so that a
      grid cell below is also the same side of the garment in every image.

    ``mask_threshold`` (in 0-255 Fashion-MNIST units, default 10) decides which resized
    object pixels belong to the object: Fashion-MNIST backgrounds are 0, but resampling and
    the data set's own processing leave a faint halo of values 1-10 around the objects.

    Items: ``image`` (3, S, S) float32 in [0, 1], ``label``, ``index``, ``object_mask`` (S, S)
    bool, ``boxes`` (1, 4) float32 tight around the mask (y0, y1, x0, x1; (0, 4) for an
    object with no pixel above the threshold).

    Garments have no annotated parts, so with ``grid_parts`` = g > 0 (default 3) the object
    frame is divided into g x g cells that stand in for them: Fashion-MNIST centres and
    scales every object in its 28 x 28 frame, so a cell is the same region of a garment
    across images (``top-centre``: the collar or waistband; ``bottom-*``: hems, soles).
    Items then also carry ``part_masks`` (g * g, S, S) bool (cell and object mask),
    ``part_names`` and ``part_keypoints`` (g * g, 3) x, y, visible (centre of the part's
    pixels), which give Huang et al.'s consistency and stability and the part metrics.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        *,
        image_size: int = 64,
        num_samples: int | Mapping[str, int] | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        object_scale: Sequence[float] = (0.45, 0.9),
        mask_threshold: float = 10.0,
        colour: bool = True,
        grid_parts: int = 3,
        mirror: bool = True,
    ) -> None:
        self.root = Path(root) if root is not None else FASHION_MNIST_DIR
        self.split = check_split(split)
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {image_size}")
        low, high = (float(v) for v in object_scale)
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"object_scale must satisfy 0 < low <= high <= 1, got {object_scale}")
        if not 0.0 <= mask_threshold < 255.0:
            raise ValueError(f"mask_threshold must lie in [0, 255), got {mask_threshold}")
        check_fraction("val_fraction", val_fraction)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.object_scale = (low, high)
        self.mask_threshold = float(mask_threshold)
        self.colour = colour
        if not isinstance(mirror, bool):
            raise ValueError(f"mirror must be true or false, got {mirror!r}")
        self.mirror = mirror
        if grid_parts < 0:
            raise ValueError(f"grid_parts must be >= 0, got {grid_parts}")
        self.grid_parts = int(grid_parts)
        self.part_names = grid_part_names(self.grid_parts)
        self.classes = list(FASHION_MNIST_CLASSES)
        self.num_classes = len(self.classes)

        official = "test" if split == "test" else "train"
        self._images, self._labels = _official_part(self.root, official)
        if split == "test":
            pool = np.arange(len(self._labels))
        else:
            parts = stratified_split([str(i) for i in range(len(self._labels))], self._labels,
                                     val_fraction=val_fraction, seed=self.seed)
            pool = np.asarray(parts[split], dtype=np.int64)
        num_samples = split_sample_count("FashionComposites", split, num_samples, {})
        if num_samples is not None and len(pool) == 0:
            raise ValueError(f"the {split!r} split has no objects to draw {num_samples} "
                             f"samples from (val_fraction={val_fraction})")
        count = len(pool) if num_samples is None else int(num_samples)
        order = np.random.default_rng([self.seed, SPLITS.index(split)]).permutation(pool)
        self.source_indices = np.resize(order, count)
        """Index into the official part of the object shown by each item."""

    def __len__(self) -> int:
        return len(self.source_indices)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        size = self.image_size
        texture = _textures()[rng.integers(len(TEXTURES))]
        largest = texture.shape[0]
        side = int(rng.integers(min(size, largest), min(4 * size, largest) + 1))
        top, left = rng.integers(0, largest - side + 1, size=2)
        patch = np.rot90(texture[top : top + side, left : left + side], k=rng.integers(4))
        patch = cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=cv2.INTER_AREA)
        tint = rng.uniform(0.3, 0.75, size=3) if self.colour else np.full(3, rng.uniform(0.3, 0.75))
        return (patch[:, :, None] * tint).astype(np.float32)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        source = int(self.source_indices[index])
        background = self._background(rng)

        size = self.image_size
        intensity = self._images[source].astype(np.float32) / 255.0
        flipped = bool(rng.random() < 0.5) and self.mirror
        if flipped:
            intensity = intensity[:, ::-1]
        side = int(np.clip(round(rng.uniform(*self.object_scale) * size), 1, size))
        intensity = np.clip(cv2.resize(np.ascontiguousarray(intensity), (side, side),
                                       interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
        top, left = rng.integers(0, size - side + 1, size=2)
        colour = rng.uniform(0.6, 1.0, size=3) if self.colour else np.full(3, rng.uniform(0.6, 1))
        image, mask = paste_object(background, intensity, int(top), int(left), colour,
                                   threshold=self.mask_threshold / 255.0)
        object_mask = torch.from_numpy(mask)
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "label": int(self._labels[source]),
            "index": index,
            "object_mask": object_mask,
            "boxes": box_from_mask(object_mask),
        }
        if self.grid_parts:
            cells = grid_cells(size, int(top), int(left), side, self.grid_parts, flipped)
            part_masks = cells & object_mask
            item.update(part_masks=part_masks, part_names=self.part_names,
                        part_keypoints=keypoints_from_masks(part_masks))
        return item
