"""Reading image and mask files into tensors, with errors that name the file.

Decoding is done by OpenCV (``cv2.imdecode`` with ``IMREAD_UNCHANGED``), which reads JPEG,
PNG (8- and 16-bit, grey, grey+alpha, RGB, RGBA, palette: palettes are expanded to colour,
a palette with transparency to colour+alpha), BMP, TIFF, WebP and GIF (first frame).
Truncated or corrupt files decode to nothing and raise :class:`ImageReadError`.

Choices where image loaders differ:

- **EXIF orientation is ignored**: pixels come back as stored, as with PIL's ``Image.open``
  and torchvision's folder loader. Annotations of the data sets read here (CUB's boxes and part
  clicks) refer to the stored pixel grid.
- **Alpha is composited** over a uniform background (``alpha_background``, white by default)
  instead of being dropped: dropping it (PIL's ``convert("RGB")``) exposes whatever colour the
  encoder left under transparent pixels.
- **Bit depth**: integer images are scaled by their dtype's maximum (255 for 8-bit, 65535 for
  16-bit); floating-point images (TIFF) are clipped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
from tqdm import tqdm

T = TypeVar("T")

BAD_IMAGE_POLICIES = ("raise", "skip")
"""Values of ``on_bad_image``: raise :class:`ImageReadError`, or leave the file out and count it."""


class ImageReadError(OSError):
    """An image or mask file is missing, unreadable or cannot be decoded; names the file."""


def _decode(path: str | Path) -> np.ndarray:
    """The file's pixels as OpenCV stores them: (H, W) or (H, W, C) in BGR(A) order."""
    path = Path(path)
    try:
        encoded = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise ImageReadError(f"cannot read image file {path}: {error.strerror or error}") from None
    if encoded.size == 0:
        raise ImageReadError(f"cannot decode image file {path}: the file is empty")
    pixels = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise ImageReadError(
            f"cannot decode image file {path}: not an image OpenCV can read, or truncated/corrupt"
        )
    if pixels.ndim == 3 and pixels.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"image file {path} has {pixels.shape[2]} channels; expected 1-4")
    return pixels


def _to_unit_range(pixels: np.ndarray, path: Path) -> np.ndarray:
    """float32 copy scaled to [0, 1] by the dtype's maximum (floats are clipped)."""
    if np.issubdtype(pixels.dtype, np.unsignedinteger):
        return pixels.astype(np.float32) / float(np.iinfo(pixels.dtype).max)
    if np.issubdtype(pixels.dtype, np.floating):
        return np.clip(pixels.astype(np.float32), 0.0, 1.0)
    raise ImageReadError(f"image file {path} has unsupported pixel type {pixels.dtype}")


def read_image(path: str | Path, *, alpha_background: float = 1.0) -> torch.Tensor:
    """An image file as a float32 tensor (3, H, W) in [0, 1], RGB order.

    Grey images are repeated over the three channels; palette images come back in colour; an
    alpha channel is composited over a uniform grey level ``alpha_background`` in [0, 1]
    (1 = white, 0 = black): ``rgb * alpha + alpha_background * (1 - alpha)``.
    Raises :class:`ImageReadError` naming the file when it is missing or cannot be decoded.
    """
    if not 0.0 <= alpha_background <= 1.0:
        raise ValueError(f"alpha_background must lie in [0, 1], got {alpha_background}")
    path = Path(path)
    pixels = _to_unit_range(_decode(path), path)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    has_alpha = pixels.shape[2] in (2, 4)
    alpha = pixels[:, :, -1:] if has_alpha else None
    colour = pixels[:, :, : pixels.shape[2] - has_alpha]
    if colour.shape[2] == 3:
        colour = colour[:, :, ::-1]  # OpenCV's BGR to RGB
    if alpha is not None:
        colour = colour * alpha + alpha_background * (1.0 - alpha)
    colour = np.broadcast_to(colour, (*colour.shape[:2], 3))
    return torch.from_numpy(np.ascontiguousarray(colour.transpose(2, 0, 1), dtype=np.float32))


def read_mask(path: str | Path, *, threshold: float = 0.0) -> torch.Tensor:
    """A mask file as a bool tensor (H, W): True where the value exceeds ``threshold``.

    ``threshold`` is in the file's own units (0-255 for 8-bit files). Colour masks use the
    largest colour channel; an alpha channel is ignored.
    """
    path = Path(path)
    pixels = _decode(path)
    if pixels.ndim == 3:
        pixels = pixels[:, :, : min(3, pixels.shape[2])].max(axis=2)
    return torch.from_numpy(np.ascontiguousarray(pixels > threshold))


def drop_unreadable(
    entries: Sequence[T],
    files: Callable[[T], Sequence[Path]],
    *,
    progress: bool = True,
    description: str = "checking images",
) -> tuple[list[T], list[tuple[Path, str]]]:
    """Keep the entries all of whose ``files(entry)`` decode; also return (file, reason) for
    every file that does not.

    Used at construction by data sets with ``on_bad_image="skip"``, so that item indices stay
    stable afterwards. Each file is fully decoded once: a truncated JPEG has a valid header,
    so nothing cheaper is reliable.
    """
    kept: list[T] = []
    failures: list[tuple[Path, str]] = []
    for entry in tqdm(entries, desc=description, disable=not progress):
        readable = True
        for path in files(entry):
            try:
                _decode(path)
            except ImageReadError as error:
                failures.append((Path(path), str(error)))
                readable = False
        if readable:
            kept.append(entry)
    return kept, failures


def check_bad_image_policy(on_bad_image: str) -> None:
    """Raise ValueError unless ``on_bad_image`` is one of :data:`BAD_IMAGE_POLICIES`."""
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ValueError(
            f"on_bad_image must be one of {', '.join(map(repr, BAD_IMAGE_POLICIES))}, "
            f"got {on_bad_image!r}"
        )
