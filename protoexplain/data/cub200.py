"""CUB-200-2011 birds (Wah et al. 2011) read from the official release.

Expected layout (the extracted ``CUB_200_2011.tgz``)::

    CUB_200_2011/
        images.txt                 <image_id> <image_name>
        classes.txt                <class_id> <class_name>
        image_class_labels.txt     <image_id> <class_id>
        train_test_split.txt       <image_id> <is_training_image>
        bounding_boxes.txt         <image_id> <x> <y> <width> <height>
        parts/parts.txt            <part_id> <part_name>          (names contain spaces)
        parts/part_locs.txt        <image_id> <part_id> <x> <y> <visible>
        images/<image_name>
    segmentations/<image_name with .png>   (optional, released separately)

Every file is parsed strictly: a malformed line, a duplicate id, an id that names no image,
class or part, or an image missing from a table raises :class:`CUBFormatError` naming the
file and line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from protoexplain.data import geometry
from protoexplain.data.image_io import (
    check_bad_image_policy,
    drop_unreadable,
    read_image,
    read_mask,
)
from protoexplain.data.splits import (
    check_classes_have_items,
    check_fraction,
    check_split,
    stratified_split,
)


class CUBFormatError(ValueError):
    """A CUB metadata file does not follow the official format; names the file and line."""


@dataclass(frozen=True)
class CUBRecord:
    """One image's annotations, in the original image's pixel coordinates."""

    image_id: int
    name: str
    label: int
    is_training: bool
    box: tuple[float, float, float, float]
    """y0, y1, x0, x1 (from the official x, y, width, height)."""
    keypoints: tuple[tuple[float, float, float], ...]
    """Per part in part-id order: x, y, visible (0/1); invisible parts are (0, 0, 0)."""


Row = tuple[int, list[Any]]
"""A parsed line: its 1-based line number and its converted fields."""


def _bit(text: str) -> int:
    if text not in ("0", "1"):
        raise ValueError(f"expected 0 or 1, got {text!r}")
    return int(text)


def _read_rows(path: Path, fields: Sequence[tuple[str, Callable[[str], Any]]]) -> list[Row]:
    """Lines of a whitespace-separated file; the last field takes the rest of the line.

    Blank lines are skipped; a line with too few fields or a field that does not convert
    raises :class:`CUBFormatError` naming ``path`` and the line number.
    """
    if not path.is_file():
        raise CUBFormatError(f"CUB file not found: {path}")
    layout = " ".join(f"<{name}>" for name, _ in fields)
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text:
                continue
            parts = text.split(maxsplit=len(fields) - 1)
            try:
                if len(parts) != len(fields):
                    raise ValueError(f"{len(parts)} fields")
                values = [convert(part) for (_, convert), part in zip(fields, parts, strict=True)]
            except ValueError as error:
                raise CUBFormatError(
                    f"{path}:{number}: expected '{layout}', got {text!r} ({error})"
                ) from None
            rows.append((number, values))
    return rows


def _by_id(path: Path, rows: list[Row]) -> dict[int, Row]:
    """Rows keyed by their first field; a repeated id raises naming both lines."""
    table: dict[int, Row] = {}
    for number, values in rows:
        key = values[0]
        if key in table:
            raise CUBFormatError(f"{path}:{number}: id {key} already given on line {table[key][0]}")
        table[key] = (number, values)
    return table


def _per_image(path: Path, rows: list[Row], images: dict[int, Row],
               images_path: Path) -> dict[int, list[Any]]:
    """One row per image: every id must name an image, and every image must have a row."""
    table = _by_id(path, rows)
    for key, (number, _) in table.items():
        if key not in images:
            raise CUBFormatError(f"{path}:{number}: image id {key} is not listed in {images_path}")
    for key, (number, _) in images.items():
        if key not in table:
            raise CUBFormatError(f"{path}: no entry for image id {key} ({images_path}:{number})")
    return {key: values[1:] for key, (_, values) in table.items()}


def resolve_root(root: str | Path | None) -> Path:
    """The folder holding ``images.txt``: ``root`` itself or ``root/CUB_200_2011``."""
    if root is None:
        raise ValueError("CUB200 needs root: the extracted CUB_200_2011 folder (data.root)")
    root = Path(root)
    for candidate in (root, root / "CUB_200_2011"):
        if (candidate / "images.txt").is_file():
            return candidate
    raise FileNotFoundError(
        f"CUB-200-2011 not found: neither {root} nor {root / 'CUB_200_2011'} holds images.txt "
        f"(extract the official CUB_200_2011.tgz and pass the extracted folder as root)"
    )


def read_metadata(root: Path) -> tuple[list[str], list[str], list[CUBRecord]]:
    """Parse the official metadata files in ``root``: (class names, part names, records).

    Class and part names are ordered by id; labels are 0-based positions in that order.
    Records are ordered by image id.
    """
    images_path = root / "images.txt"
    images = _by_id(images_path, _read_rows(images_path, [("image_id", int), ("image_name", str)]))

    classes_path = root / "classes.txt"
    classes = _by_id(classes_path, _read_rows(classes_path, [("class_id", int), ("name", str)]))
    class_ids = sorted(classes)
    class_position = {class_id: i for i, class_id in enumerate(class_ids)}

    labels_path = root / "image_class_labels.txt"
    label_rows = _read_rows(labels_path, [("image_id", int), ("class_id", int)])
    for number, (_, class_id) in label_rows:
        if class_id not in class_position:
            raise CUBFormatError(f"{labels_path}:{number}: class id {class_id} is not listed in "
                                 f"{classes_path}")
    labels = _per_image(labels_path, label_rows, images, images_path)

    split_path = root / "train_test_split.txt"
    is_training = _per_image(
        split_path, _read_rows(split_path, [("image_id", int), ("is_training_image", _bit)]),
        images, images_path)

    boxes_path = root / "bounding_boxes.txt"
    box_rows = _read_rows(boxes_path, [("image_id", int), ("x", float), ("y", float),
                                       ("width", float), ("height", float)])
    for number, (_, *box) in box_rows:
        if not all(map(math.isfinite, box)) or box[2] <= 0 or box[3] <= 0:
            raise CUBFormatError(f"{boxes_path}:{number}: a box needs finite values and positive "
                                 f"width and height, got {box}")
    boxes = _per_image(boxes_path, box_rows, images, images_path)

    parts_path = root / "parts" / "parts.txt"
    parts = _by_id(parts_path, _read_rows(parts_path, [("part_id", int), ("part_name", str)]))
    part_ids = sorted(parts)
    part_position = {part_id: i for i, part_id in enumerate(part_ids)}

    locs_path = root / "parts" / "part_locs.txt"
    keypoints: dict[int, list[tuple[float, float, float] | None]] = {
        image_id: [None] * len(part_ids) for image_id in images
    }
    seen: dict[tuple[int, int], int] = {}
    for number, (image_id, part_id, x, y, visible) in _read_rows(
        locs_path, [("image_id", int), ("part_id", int), ("x", float), ("y", float),
                    ("visible", _bit)]
    ):
        if image_id not in images:
            raise CUBFormatError(f"{locs_path}:{number}: image id {image_id} is not listed in "
                                 f"{images_path}")
        if part_id not in part_position:
            raise CUBFormatError(f"{locs_path}:{number}: part id {part_id} is out of range (the "
                                 f"ids in {parts_path} are {part_ids[0]}..{part_ids[-1]})")
        if (image_id, part_id) in seen:
            raise CUBFormatError(f"{locs_path}:{number}: image {image_id} part {part_id} already "
                                 f"given on line {seen[image_id, part_id]}")
        seen[image_id, part_id] = number
        keypoints[image_id][part_position[part_id]] = (x, y, 1.0) if visible else (0.0, 0.0, 0.0)
    for image_id, locations in keypoints.items():
        if None in locations:
            missing = part_ids[locations.index(None)]
            raise CUBFormatError(f"{locs_path}: no location for image id {image_id} part {missing}")

    records = []
    for image_id in sorted(images):
        x, y, width, height = boxes[image_id]
        records.append(CUBRecord(
            image_id=image_id,
            name=images[image_id][1][1],
            label=class_position[labels[image_id][0]],
            is_training=bool(is_training[image_id][0]),
            box=(y, y + height, x, x + width),
            keypoints=tuple(keypoints[image_id]),  # type: ignore[arg-type]
        ))
    class_names = [classes[i][1][1] for i in class_ids]
    part_names = [parts[i][1][1] for i in part_ids]
    return class_names, part_names, records


def keep_box_parts(keypoints: torch.Tensor, box: tuple[float, float, float, float],
                   crop: tuple[int, int, int, int]) -> torch.Tensor:
    """Keypoints (N, 3: x, y, visible) with every visible part inside ``box`` (y0, y1, x0,
    x1 in continuous coordinates, edges included, as ``bounding_boxes.txt`` gives it) moved
    onto the pixels of ``crop`` (y0, y1, x0, x1, integer, end-exclusive).

    A keypoint is a pixel centre (:mod:`protoexplain.data.geometry`): the crop keeps those
    within half a pixel of its pixels, so a part exactly on the box's right or bottom edge
    (CUB's boxes are tight; beaks and tails lie there) would be cut away. Such a part is
    clamped to the nearest pixel of the crop; every other keypoint is left as it is.
    """
    top, bottom, left, right = crop
    x, y, visible = keypoints.double().unbind(dim=1)
    y0, y1, x0, x1 = box
    tolerance = 1e-3  # the files give a tenth of a pixel; x + width may round below the part
    inside = ((visible > 0) & (x >= x0 - tolerance) & (x <= x1 + tolerance)
              & (y >= y0 - tolerance) & (y <= y1 + tolerance))

    def clamp(values: torch.Tensor, first: int, last: int) -> torch.Tensor:
        values = torch.where(values < first - 0.5, torch.full_like(values, first), values)
        return torch.where(values >= last + 0.5, torch.full_like(values, last), values)

    x = torch.where(inside, clamp(x, left, right - 1), x)
    y = torch.where(inside, clamp(y, top, bottom - 1), y)
    return torch.stack([x, y, visible], dim=1).to(keypoints.dtype)


class CUB200(Dataset):
    """CUB-200-2011 with its boxes, part keypoints and (when present) segmentations.

    Splits: ``test`` is the official test set; ``train`` and ``val`` divide the official
    training images, ``val_fraction`` of each class held out by a hash of the image name and
    ``split_seed`` (:func:`~protoexplain.data.splits.stratified_split`), so that model
    selection never looks at the test set. ``val_fraction=0`` puts all official training
    images in ``train``, as the original ProtoPNet did (it selected on the test set); a
    training run refuses it, since its validation split is empty.

    Processing, in this order, moving every annotation with the pixels:

    1. ``crop_to_box`` (default True, the ProtoPNet practice): cut out the bird's bounding
       box (x, y, width, height widened to whole pixels);
    2. ``image_size`` (default 224 x 224, ProtoPNet's ``img_size``; aspect not kept, as
       torchvision's ``Resize((S, S))`` in ProtoPNet's ``main.py``); None keeps the size;
    3. ``augment`` (default False): :class:`~protoexplain.data.geometry.ProtoPNetAugmentation`,
       the original's rotation/skew/shear + flip, drawn afresh for each access. Train with
       ``CUB200(root, "train", augment=True)``; the push set is ``CUB200(root, "train")``.
       Flips swap the left/right parts.

    Items: ``image`` (3, H, W) float32 in [0, 1], ``label`` (0-based, classes.txt order),
    ``index``; ``part_keypoints`` (15, 3) float32 x, y, visible in the returned image
    (invisible, or cropped away: 0, 0, 0), with ``part_names`` naming the rows; ``boxes``
    (1, 4) float32, the bird's box (y0, y1, x0, x1); ``object_mask`` (H, W) bool when
    segmentations are found: foreground where the PNG value exceeds ``segmentation_threshold``
    (default 0: any non-zero pixel). CUB has no part masks, so there is no ``part_masks``.

    ``segmentations``: the folder of the separately released segmentations; by default
    ``root/segmentations`` or, failing that, a ``segmentations`` folder beside ``root``;
    ``False`` never reads them.

    ``on_bad_image``: ``"raise"`` (an unreadable image raises
    :class:`~protoexplain.data.image_io.ImageReadError` naming it when the item is loaded) or
    ``"skip"`` (every image of the split, and its segmentation, is decoded once at
    construction; failures are left out, listed in ``skipped`` as (path, reason) and counted
    by ``num_skipped``, so indices stay stable).
    """

    def __init__(
        self,
        root: str | Path | None,
        split: str = "train",
        *,
        crop_to_box: bool = True,
        image_size: int | Sequence[int] | None = 224,
        augment: bool = False,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        segmentations: str | Path | bool | None = None,
        segmentation_threshold: float = 0.0,
        on_bad_image: str = "raise",
        progress: bool = True,
    ) -> None:
        self.root = resolve_root(root)
        self.split = check_split(split)
        check_fraction("val_fraction", val_fraction)
        check_bad_image_policy(on_bad_image)
        self.crop_to_box = crop_to_box
        self.image_size = geometry.as_size(image_size)
        self.segmentation_threshold = float(segmentation_threshold)
        self.segmentations_dir = self._find_segmentations(segmentations)

        classes, part_names, records = read_metadata(self.root)
        self.classes = classes
        self.num_classes = len(classes)
        self.part_names = tuple(part_names)
        self.augmentation = geometry.ProtoPNetAugmentation(
            mirror=geometry.mirror_permutation(self.part_names)) if augment else None

        if split == "test":
            chosen = [r for r in records if not r.is_training]
        else:
            training = [r for r in records if r.is_training]
            parts = stratified_split([r.name for r in training], [r.label for r in training],
                                     val_fraction=val_fraction, seed=split_seed)
            chosen = [training[i] for i in parts[split]]

        self.skipped: list[tuple[Path, str]] = []
        """(file, reason) for each unreadable file ``on_bad_image="skip"`` found."""
        self.num_skipped = 0
        """How many items ``on_bad_image="skip"`` left out."""
        if on_bad_image == "skip":
            kept, self.skipped = drop_unreadable(chosen, self._files, progress=progress,
                                                 description=f"checking CUB {split} images")
            self.num_skipped = len(chosen) - len(kept)
            chosen = kept
        if split == "train":
            check_classes_have_items("CUB200", "train", [r.label for r in chosen], classes,
                                     self.num_skipped)
        self.records = chosen

    def _find_segmentations(self, option: str | Path | bool | None) -> Path | None:
        if option is False:
            return None
        if option is None or option is True:
            for candidate in (self.root / "segmentations", self.root.parent / "segmentations"):
                if candidate.is_dir():
                    return candidate
            if option is True:
                raise FileNotFoundError(f"no segmentations folder in {self.root} or beside it")
            return None
        folder = Path(option)
        if not folder.is_dir():
            raise FileNotFoundError(f"segmentations folder not found: {folder}")
        return folder

    def _files(self, record: CUBRecord) -> tuple[Path, ...]:
        """The image file, and its segmentation when segmentations are used."""
        image = self.root / "images" / record.name
        if self.segmentations_dir is None:
            return (image,)
        return image, (self.segmentations_dir / record.name).with_suffix(".png")

    @property
    def paths(self) -> list[Path]:
        """The image file of each item."""
        return [self._files(r)[0] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        record = self.records[index]
        files = self._files(record)
        item: dict[str, Any] = {
            "image": read_image(files[0]),
            "label": record.label,
            "index": index,
            "part_names": self.part_names,
            "part_keypoints": torch.tensor(record.keypoints, dtype=torch.float32),
            "boxes": torch.tensor([record.box], dtype=torch.float32),
        }
        if self.segmentations_dir is not None:
            mask = read_mask(files[1], threshold=self.segmentation_threshold)
            if mask.shape != item["image"].shape[1:]:
                raise ValueError(f"segmentation {files[1]} is {tuple(mask.shape)} but image "
                                 f"{files[0]} is {tuple(item['image'].shape[1:])}")
            item["object_mask"] = mask
        if self.crop_to_box:
            y0, y1, x0, x1 = record.box
            height, width = item["image"].shape[-2:]
            crop = (max(0, math.floor(y0)), min(int(height), math.ceil(y1)),
                    max(0, math.floor(x0)), min(int(width), math.ceil(x1)))
            item["part_keypoints"] = keep_box_parts(item["part_keypoints"], record.box, crop)
            item = geometry.crop(item, crop)
        if self.image_size is not None:
            item = geometry.resize(item, self.image_size)
        if self.augmentation is not None:
            item = self.augmentation(item)
        return item
