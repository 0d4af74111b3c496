"""Geometric transforms that move an image and all its ground truth together.

An *item* is a data set sample (a dict). These functions transform its spatial entries and
copy everything else unchanged:

- ``image``: float tensor (C, H, W);
- ``object_mask``: bool (H, W); ``part_masks``: bool (N, H, W);
- ``part_keypoints``: float32 (N, 3) rows of x, y, visible (0/1);
- ``boxes``: float32 (N, 4) rows of y0, y1, x0, x1.

Coordinate conventions (the same as :mod:`protoexplain.data.shapes`):

- A keypoint (x, y) with integer values lies at the *centre* of pixel column x, row y
  (OpenCV's convention). Invisible keypoints are stored as (0, 0, 0); a keypoint that a
  transform moves off the image becomes invisible.
- A box (y0, y1, x0, x1) covers rows y0 .. y1-1 and columns x0 .. x1-1 (end-exclusive pixel
  indices, which are also the box's edges in "edge coordinates", where pixel i spans [i, i+1)).
  A transformed box is the axis-aligned box enclosing the transformed corners, clipped to the
  image; boxes left empty are dropped.

Annotations are mapped exactly by a 3x3 matrix in edge coordinates. Images are resampled
bilinearly (with antialiasing when shrinking); masks are resampled the same way as a float and
thresholded at 0.5, so they stay aligned with the image.

:class:`ProtoPNetAugmentation` reproduces online the offline augmentation of the original
ProtoPNet (cfchen-duke/ProtoPNet ``img_aug.py``, which used the Augmentor library).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

Item = dict[str, Any]
Size = tuple[int, int]
"""(height, width) in pixels."""


def as_size(value: int | Sequence[int] | None, name: str = "image_size") -> Size | None:
    """``image_size`` options: an int S means (S, S), a pair means (height, width), None
    means "keep"; anything else raises ValueError naming ``name``."""
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int) else value
    if not isinstance(pair, Sequence) or len(pair) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair
    ):
        raise ValueError(f"{name} must be a positive int, a (height, width) pair or None, "
                         f"got {value!r}")
    return int(pair[0]), int(pair[1])


def item_size(item: Item) -> Size:
    """(height, width) of the item's image."""
    height, width = item["image"].shape[-2:]
    return int(height), int(width)


def _affine(rows: Sequence[Sequence[float]]) -> torch.Tensor:
    return torch.tensor([*rows, [0.0, 0.0, 1.0]], dtype=torch.float64)


def _translation(dx: float, dy: float) -> torch.Tensor:
    return _affine([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def _apply(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Map points (n, 2) of x, y in edge coordinates by a 3x3 homography."""
    homogeneous = torch.cat([points.double(), points.new_ones(len(points), 1).double()], dim=1)
    mapped = homogeneous @ matrix.to(points.device).T
    return mapped[:, :2] / mapped[:, 2:]


def _map_keypoints(keypoints: torch.Tensor, matrix: torch.Tensor, size: Size) -> torch.Tensor:
    """Keypoints (N, 3) moved by ``matrix``; those landing off a ``size`` image turn invisible."""
    height, width = size
    visible = keypoints[:, 2] > 0
    xy = _apply(matrix, keypoints[:, :2].double() + 0.5)  # pixel centres to edge coordinates
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    visible = visible & inside
    xy = torch.where(visible[:, None], xy - 0.5, torch.zeros_like(xy))
    return torch.cat([xy, visible[:, None].double()], dim=1).to(torch.float32)


def _map_boxes(boxes: torch.Tensor, matrix: torch.Tensor, size: Size) -> torch.Tensor:
    """Boxes (N, 4) as y0, y1, x0, x1: enclosing box of the mapped corners, clipped, non-empty."""
    height, width = size
    y0, y1, x0, x1 = boxes.double().unbind(dim=1)
    corners = torch.stack(
        [torch.stack([x0, y0], 1), torch.stack([x1, y0], 1),
         torch.stack([x1, y1], 1), torch.stack([x0, y1], 1)], dim=1
    )  # (N, 4 corners, x y)
    mapped = _apply(matrix, corners.reshape(-1, 2)).reshape(-1, 4, 2)
    low, high = mapped.amin(dim=1), mapped.amax(dim=1)
    result = torch.stack(
        [low[:, 1].clamp(0, height), high[:, 1].clamp(0, height),
         low[:, 0].clamp(0, width), high[:, 0].clamp(0, width)], dim=1
    )
    keep = (result[:, 1] > result[:, 0]) & (result[:, 3] > result[:, 2])
    return result[keep].to(torch.float32)


def _map_annotations(item: Item, matrix: torch.Tensor, size: Size) -> Item:
    """Copy of ``item`` with keypoints and boxes mapped (pixels are the caller's job)."""
    out = dict(item)
    if "part_keypoints" in item:
        out["part_keypoints"] = _map_keypoints(item["part_keypoints"], matrix, size)
    if "boxes" in item:
        out["boxes"] = _map_boxes(item["boxes"], matrix, size)
    return out


def _masks(item: Item) -> list[str]:
    return [key for key in ("object_mask", "part_masks") if key in item]


def resize(item: Item, size: Size) -> Item:
    """Scale the item to ``size`` = (height, width) (aspect ratio not kept, as ProtoPNet does)."""
    height, width = item_size(item)
    new_height, new_width = int(size[0]), int(size[1])
    if new_height < 1 or new_width < 1:
        raise ValueError(f"resize size must be positive, got {size}")
    if (new_height, new_width) == (height, width):
        return dict(item)
    matrix = _affine([[new_width / width, 0.0, 0.0], [0.0, new_height / height, 0.0]])
    out = _map_annotations(item, matrix, (new_height, new_width))

    def scale(pixels: torch.Tensor) -> torch.Tensor:
        return F.interpolate(pixels[None], size=(new_height, new_width), mode="bilinear",
                             align_corners=False, antialias=True)[0]

    out["image"] = scale(item["image"]).clamp(0.0, 1.0)
    for key in _masks(item):
        mask = item[key]
        stacked = mask.reshape(-1, height, width).float()
        out[key] = (scale(stacked) > 0.5).reshape(*mask.shape[:-2], new_height, new_width)
    return out


def crop(item: Item, box: Sequence[int]) -> Item:
    """Cut out ``box`` = (y0, y1, x0, x1), integer end-exclusive pixels, clipped to the image."""
    height, width = item_size(item)
    y0, y1 = max(0, int(box[0])), min(height, int(box[1]))
    x0, x1 = max(0, int(box[2])), min(width, int(box[3]))
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"crop box {tuple(box)} does not overlap the {height}x{width} image")
    out = _map_annotations(item, _translation(-x0, -y0), (y1 - y0, x1 - x0))
    for key in ("image", *_masks(item)):
        out[key] = item[key][..., y0:y1, x0:x1].clone()
    return out


def mirror_permutation(part_names: Sequence[str]) -> list[int]:
    """Row order that swaps left/right parts, for a horizontal flip.

    A part named with the word ``left`` takes the row of the same name with ``right`` (and
    back); e.g. CUB's "left eye" and "right eye". Parts without a partner keep their row.
    After mirroring an image of a bird, what was its left eye is where a right eye would be.
    """
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        other = {"left": "right", "right": "left"}[word.lower()]
        return other.upper() if word.isupper() else other.title() if word.istitle() else other

    position = {name: i for i, name in enumerate(part_names)}
    pattern = re.compile(r"(?<![A-Za-z])(left|right)(?![A-Za-z])", re.IGNORECASE)
    return [position.get(pattern.sub(swap, name), i) for i, name in enumerate(part_names)]


def hflip(item: Item, mirror: Sequence[int] | None = None) -> Item:
    """Mirror the item left to right. ``mirror`` reorders part rows (see
    :func:`mirror_permutation`); ``None`` keeps them."""
    _, width = item_size(item)
    out = _map_annotations(item, _affine([[-1.0, 0.0, width], [0.0, 1.0, 0.0]]), item_size(item))
    for key in ("image", *_masks(item)):
        out[key] = item[key].flip(-1)
    if mirror is not None:
        order = torch.as_tensor(list(mirror), dtype=torch.long)
        for key in ("part_keypoints", "part_masks"):
            if key in out:
                out[key] = out[key][order.to(out[key].device)]
    return out


def warp(item: Item, matrix: torch.Tensor, size: Size | None = None) -> Item:
    """Apply a homography ``matrix`` (3, 3), mapping input to output edge coordinates.

    The output has ``size`` (default: the input's). Pixels that come from outside the input
    are black in the image and False in the masks.
    """
    in_height, in_width = item_size(item)
    out_height, out_width = size if size is not None else (in_height, in_width)
    matrix = matrix.to(torch.float64)
    out = _map_annotations(item, matrix, (out_height, out_width))

    device = item["image"].device
    ys = torch.arange(out_height, device=device, dtype=torch.float64) + 0.5
    xs = torch.arange(out_width, device=device, dtype=torch.float64) + 0.5
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    source = _apply(torch.linalg.inv(matrix), torch.stack([grid_x, grid_y], -1).reshape(-1, 2))
    # grid_sample with align_corners=False uses edge coordinates scaled to [-1, 1].
    normalised = source / source.new_tensor([in_width, in_height]) * 2.0 - 1.0
    grid = normalised.reshape(1, out_height, out_width, 2).to(torch.float32)

    def sample(pixels: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(pixels[None].float(), grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)[0]

    out["image"] = sample(item["image"]).clamp(0.0, 1.0).to(item["image"].dtype)
    for key in _masks(item):
        mask = item[key]
        stacked = sample(mask.reshape(-1, in_height, in_width)) > 0.5
        out[key] = stacked.reshape(*mask.shape[:-2], out_height, out_width)
    return out


def rotation_matrix(size: Size, degrees: float, *, fill_frame: bool = True) -> torch.Tensor:
    """Rotation by ``degrees`` (counter-clockwise on screen) about the image centre.

    With ``fill_frame`` the result is enlarged until the largest centred rectangle of the
    image's aspect ratio inside the rotated image fills the frame, so no empty corners remain
    (Augmentor's ``RotateRange``, which crops that rectangle and resizes it back).
    """
    height, width = size
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    zoom = 1.0
    if fill_frame:
        c, s = abs(cos), abs(sin)
        zoom = 1.0 / min(width / (width * c + height * s), height / (width * s + height * c))
    rotate = _affine([[zoom * cos, zoom * sin, 0.0], [-zoom * sin, zoom * cos, 0.0]])
    return _translation(width / 2, height / 2) @ rotate @ _translation(-width / 2, -height / 2)


MAX_SHEAR_STRETCH = 2.0
"""Cap on the stretch that removes a shear's empty triangles (reached only by images more than
about 2.8 times taller than wide, or wider than tall, at 10 degrees)."""


def shear_matrix(size: Size, degrees: float, axis: str) -> torch.Tensor:
    """Shear by ``degrees`` along ``axis`` ("x" or "y") about the image centre, then stretch
    along that axis so the sheared image fills the frame (Augmentor's ``Shear`` crops the
    fully covered band and resizes it back)."""
    height, width = size
    t = math.tan(math.radians(degrees))
    if axis == "x":
        stretch = min(width / max(width - abs(t) * height, 1e-9), MAX_SHEAR_STRETCH)
        shear = _affine([[stretch, stretch * t, 0.0], [0.0, 1.0, 0.0]])
    elif axis == "y":
        stretch = min(height / max(height - abs(t) * width, 1e-9), MAX_SHEAR_STRETCH)
        shear = _affine([[1.0, 0.0, 0.0], [stretch * t, stretch, 0.0]])
    else:
        raise ValueError(f"shear axis must be 'x' or 'y', got {axis!r}")
    return _translation(width / 2, height / 2) @ shear @ _translation(-width / 2, -height / 2)


def perspective_matrix(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The homography (3, 3) mapping four points ``source`` (4, 2) onto ``target`` (4, 2)."""
    rows, values = [], []
    for (x, y), (u, v) in zip(source.tolist(), target.tolist(), strict=True):
        rows.append([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y])
        rows.append([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y])
        values += [u, v]
    solution = torch.linalg.solve(torch.tensor(rows, dtype=torch.float64),
                                  torch.tensor(values, dtype=torch.float64))
    return torch.cat([solution, solution.new_ones(1)]).reshape(3, 3)


SKEW_MOVES: tuple[tuple[tuple[int, int], ...], ...] = (
    # (corner, axis) pairs moved outward; corners 0..3 = top-left, top-right, bottom-right,
    # bottom-left; axis 0 = x, 1 = y. Tilts move the two corners of one side:
    ((0, 1), (3, 1)), ((1, 1), (2, 1)), ((0, 0), (1, 0)), ((3, 0), (2, 0)),
    # corner skews move one corner along one axis:
    ((0, 0),), ((0, 1),), ((1, 0),), ((1, 1),), ((2, 0),), ((2, 1),), ((3, 0),), ((3, 1),),
)
"""Augmentor's skews: 4 tilts (left, right, forward, backward) and 8 corner moves."""


def skew_matrix(size: Size, move: int, amount: float) -> torch.Tensor:
    """Perspective skew: the image corners of ``SKEW_MOVES[move]`` are pushed outward by
    ``amount`` pixels and the image is mapped onto the new quadrilateral (Augmentor's ``Skew``;
    the parts pushed past the frame are cut, uncovered parts are black)."""
    height, width = size
    corners = torch.tensor([[0.0, 0.0], [width, 0.0], [width, height], [0.0, height]],
                           dtype=torch.float64)
    outward = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]],
                           dtype=torch.float64)
    moved = corners.clone()
    for corner, axis in SKEW_MOVES[move]:
        moved[corner, axis] += outward[corner, axis] * amount
    return perspective_matrix(corners, moved)


class ProtoPNetAugmentation:
    """The original ProtoPNet's training augmentation, drawn afresh for every sample.

    ``img_aug.py`` in cfchen-duke/ProtoPNet wrote, per training image, 10 copies from each of
    three Augmentor pipelines and trained on those 30 copies only:

    1. ``rotate(max_left_rotation=15, max_right_rotation=15)``, then ``flip_left_right(0.5)``;
    2. ``skew(magnitude=0.2)`` (random tilt or corner skew), then ``flip_left_right(0.5)``;
    3. ``shear(max_shear_left=10, max_shear_right=10)``, then ``flip_left_right(0.5)``.

    Online, each call picks one of the three pipelines uniformly and draws its parameters:
    rotation angle uniform in [-max_rotation, max_rotation] degrees, skew type as Augmentor's
    ``"RANDOM"`` (a tilt with probability 3/4, each of 4 directions alike, else one of 8
    corner moves) with an amount uniform in (0, skew_magnitude * max(H, W)] pixels, shear
    angle uniform in [-max_shear, max_shear] degrees along x or y, then a horizontal flip with
    ``flip_probability``. Augmentor draws whole degrees and pixels; we draw continuous values.
    Rotation and shear zoom in to leave no empty corners, as Augmentor's crop-and-resize does.

    ``mirror`` reorders part rows on a flip (:func:`mirror_permutation`). Randomness comes from
    ``generator``, or torch's global generator (which DataLoader seeds per worker).
    """

    def __init__(
        self,
        *,
        max_rotation: float = 15.0,
        skew_magnitude: float = 0.2,
        max_shear: float = 10.0,
        flip_probability: float = 0.5,
        mirror: Sequence[int] | None = None,
    ) -> None:
        self.max_rotation = max_rotation
        self.skew_magnitude = skew_magnitude
        self.max_shear = max_shear
        self.flip_probability = flip_probability
        self.mirror = list(mirror) if mirror is not None else None

    def __call__(self, item: Item, generator: torch.Generator | None = None) -> Item:
        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand((), generator=generator))

        def choice(n: int) -> int:
            return int(torch.randint(n, (), generator=generator))

        size = item_size(item)
        pipeline = choice(3)
        if pipeline == 0:
            matrix = rotation_matrix(size, uniform(-self.max_rotation, self.max_rotation))
        elif pipeline == 1:
            move = choice(4) if uniform(0.0, 1.0) < 0.75 else 4 + choice(8)
            amount = uniform(0.0, 1.0) * self.skew_magnitude * max(size)
            matrix = skew_matrix(size, move, amount)
        else:
            axis = "xy"[choice(2)]
            matrix = shear_matrix(size, uniform(-self.max_shear, self.max_shear), axis)
        out = warp(item, matrix)
        if uniform(0.0, 1.0) < self.flip_probability:
            out = hflip(out, self.mirror)
        return out
