"""NIH ChestX-ray14 (Wang et al., "ChestX-ray8", CVPR 2017) read from the official release.

Expected layout (the NIH/Kaggle download, extracted)::

    root/
        Data_Entry_2017.csv     Image Index, Finding Labels, Follow-up #, Patient ID, ...
        train_val_list.txt      one image name per line
        test_list.txt           one image name per line
        BBox_List_2017.csv      Image Index, Finding Label, Bbox [x,y,w,h]  (optional)
        images/<name>.png       or images_001/images/<name>.png, images_002/images/..., both

Format details handled here:

- ``Data_Entry_2017.csv``'s header has bracketed names containing commas
  (``OriginalImage[Width,Height]``), so it has more fields than names; columns are found by
  name (``Image Index``, ``Finding Labels``, ``Patient ID``) in the comma-split header, which
  lines up with the rows.
- ``Finding Labels`` are ``|``-separated names of the 14 findings; ``No Finding`` means none
  (an all-zero label).
- ``BBox_List_2017.csv`` rows may end in empty fields; its ``x, y, w, h`` are pixels of the
  1024 x 1024 released images; it names Infiltration ``Infiltrate``.

Every file is parsed strictly: a malformed line, an unknown finding, a repeated image, a
listed image without a row, or a missing image file raises an error naming the file (and
line, or the images).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from protoexplain.data import geometry
from protoexplain.data.image_io import read_image
from protoexplain.data.splits import check_fraction, check_split, stratified_split

FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
            "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
            "Pleural_Thickening", "Hernia")
"""The 14 findings in the usual label order (Wang et al. 2017; CheXNet)."""

NO_FINDING = "No Finding"
BOX_FINDING_ALIASES = {"Infiltrate": "Infiltration"}
"""Finding names of ``BBox_List_2017.csv`` that differ from ``Data_Entry_2017.csv``'s."""

BOX_REFERENCE_SIZE = 1024
"""Side in pixels of the released images, the frame of ``BBox_List_2017.csv``."""

ENTRY_FILE = "Data_Entry_2017.csv"
TRAIN_VAL_FILE = "train_val_list.txt"
TEST_FILE = "test_list.txt"
BOX_FILE = "BBox_List_2017.csv"


class ChestXrayFormatError(ValueError):
    """A ChestX-ray14 metadata file does not follow the official format; names the file and
    line."""


@dataclass(frozen=True)
class ChestXrayRecord:
    """One image: file name, patient, label (finding indices), boxes (y0, y1, x0, x1) in
    pixels of the 1024-pixel released image, and each box's finding index."""

    name: str
    patient: str
    findings: tuple[int, ...]
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    box_findings: tuple[int, ...] = ()


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, stripped fields) of each non-blank CSV line, header included."""
    if not path.is_file():
        raise ChestXrayFormatError(f"ChestX-ray14 file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [(number, [field.strip() for field in fields])
                for number, fields in enumerate(csv.reader(handle), start=1)
                if any(field.strip() for field in fields)]


def _columns(path: Path, header: list[str], names: Sequence[str]) -> list[int]:
    missing = [name for name in names if name not in header]
    if missing:
        raise ChestXrayFormatError(f"{path}:1: header lacks column(s) {missing}; got {header}")
    return [header.index(name) for name in names]


def _finding_index(name: str, path: Path, number: int) -> int:
    if name not in FINDINGS:
        raise ChestXrayFormatError(f"{path}:{number}: unknown finding {name!r}; known: "
                                   f"{', '.join(FINDINGS)} or {NO_FINDING!r}")
    return FINDINGS.index(name)


def read_entries(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``Data_Entry_2017.csv`` as {image name: (patient id, finding indices)}."""
    rows = _rows(path)
    if not rows:
        raise ChestXrayFormatError(f"{path}: the file is empty")
    name_at, labels_at, patient_at = _columns(path, rows[0][1],
                                              ("Image Index", "Finding Labels", "Patient ID"))
    needed = max(name_at, labels_at, patient_at) + 1
    entries: dict[str, tuple[str, tuple[int, ...]]] = {}
    lines: dict[str, int] = {}
    for number, fields in rows[1:]:
        if len(fields) < needed:
            raise ChestXrayFormatError(f"{path}:{number}: expected at least {needed} fields, got "
                                       f"{len(fields)}: {fields}")
        name, text, patient = fields[name_at], fields[labels_at], fields[patient_at]
        if not name or not patient or not text:
            raise ChestXrayFormatError(f"{path}:{number}: empty image name, finding labels or "
                                       f"patient id: {fields}")
        if name in entries:
            raise ChestXrayFormatError(f"{path}:{number}: image {name} already given on line "
                                       f"{lines[name]}")
        names = [part.strip() for part in text.split("|")]
        if NO_FINDING in names:
            if len(names) > 1:
                raise ChestXrayFormatError(f"{path}:{number}: {NO_FINDING!r} combined with "
                                           f"findings: {text!r}")
            findings: tuple[int, ...] = ()
        else:
            findings = tuple(sorted({_finding_index(part, path, number) for part in names}))
        entries[name] = (patient, findings)
        lines[name] = number
    return entries


def read_image_list(path: Path, entries: dict[str, Any], entries_path: Path) -> list[str]:
    """Image names of a list file; each must have a row in ``entries`` and appear once."""
    if not path.is_file():
        raise ChestXrayFormatError(f"ChestX-ray14 file not found: {path}")
    names: list[str] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            name = line.strip()
            if not name:
                continue
            if name in seen:
                raise ChestXrayFormatError(f"{path}:{number}: image {name} already listed on "
                                           f"line {seen[name]}")
            if name not in entries:
                raise ChestXrayFormatError(f"{path}:{number}: image {name} has no row in "
                                           f"{entries_path}")
            seen[name] = number
            names.append(name)
    return names


def read_boxes(path: Path, entries: dict[str, Any], entries_path: Path
               ) -> dict[str, list[tuple[tuple[float, float, float, float], int]]]:
    """``BBox_List_2017.csv`` as {image name: [((y0, y1, x0, x1), finding index), ...]} in
    pixels of the 1024-pixel image; fields after ``h`` must be empty."""
    rows = _rows(path)
    if not rows or rows[0][1][:2] != ["Image Index", "Finding Label"]:
        raise ChestXrayFormatError(f"{path}:1: expected a header starting with 'Image Index,"
                                   f"Finding Label,Bbox [x,y,w,h]'")
    boxes: dict[str, list[tuple[tuple[float, float, float, float], int]]] = {}
    for number, fields in rows[1:]:
        if len(fields) < 6 or any(fields[6:]):
            raise ChestXrayFormatError(f"{path}:{number}: expected 'image,finding,x,y,w,h' "
                                       f"(then only empty fields), got {fields}")
        name, finding = fields[0], BOX_FINDING_ALIASES.get(fields[1], fields[1])
        try:
            x, y, width, height = (float(value) for value in fields[2:6])
        except ValueError:
            raise ChestXrayFormatError(f"{path}:{number}: x, y, w, h must be numbers, got "
                                       f"{fields[2:6]}") from None
        if not all(map(math.isfinite, (x, y, width, height))) or width <= 0 or height <= 0:
            raise ChestXrayFormatError(f"{path}:{number}: a box needs finite values and positive "
                                       f"width and height, got {fields[2:6]}")
        if x >= BOX_REFERENCE_SIZE or y >= BOX_REFERENCE_SIZE or x + width <= 0 \
                or y + height <= 0:
            raise ChestXrayFormatError(f"{path}:{number}: box {fields[2:6]} lies outside the "
                                       f"{BOX_REFERENCE_SIZE}x{BOX_REFERENCE_SIZE} image")
        if name not in entries:
            raise ChestXrayFormatError(f"{path}:{number}: image {name} has no row in "
                                       f"{entries_path}")
        index = _finding_index(finding, path, number)
        boxes.setdefault(name, []).append(((y, y + height, x, x + width), index))
    return boxes


def find_image_files(root: Path, names: Sequence[str]) -> dict[str, Path]:
    """The file of each name under ``root/images/`` or ``root/images_*/images/``.

    Raises FileNotFoundError naming the missing images (the first ten and their count) and
    the folders searched.
    """
    folders = [root / "images"] + sorted(path / "images" for path in root.glob("images_*"))
    folders = [folder for folder in folders if folder.is_dir()]
    wanted = set(names)
    found: dict[str, Path] = {}
    for folder in folders:
        for entry in folder.iterdir():
            if entry.name in wanted and entry.name not in found:
                found[entry.name] = entry
    missing = [name for name in names if name not in found]
    if missing:
        searched = ", ".join(str(folder) for folder in folders) or \
            f"none ({root / 'images'} and {root}/images_*/images do not exist)"
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise FileNotFoundError(f"ChestX-ray14: {len(missing)} image file(s) not found: {shown} "
                                f"(searched {searched})")
    return found


class ChestXray14(Dataset):
    """NIH ChestX-ray14 with its 14 multi-hot labels and, where given, the findings' boxes.

    Args:
        root: the folder holding ``Data_Entry_2017.csv`` (see the module docstring).
        split: ``test`` is the official ``test_list.txt``; ``train`` and ``val`` divide the
            official ``train_val_list.txt`` by patient: ``val_fraction`` of its patients
            (rounded) go to validation, chosen by a salted hash of the patient id and
            ``seed`` (:func:`~protoexplain.data.splits.stratified_split` on patients), so no
            patient has images in both.
        image_size: output size (int or (H, W); default 224 x 224, aspect not kept); None
            keeps the file's size. Boxes move with the pixels.
        val_fraction: share of the train_val patients held out for validation.
        seed: salt of the patient split.
        only_with_boxes: keep only images that have boxes (the localization subset).
        boxes: read ``BBox_List_2017.csv`` (True: required; False: never; None: when
            present).

    Items: ``image`` float32 (3, H, W) in [0, 1] (grey on three channels), ``label`` float32
    (14,) multi-hot, ``index``, ``boxes`` float32 (N, 4) ``y0, y1, x0, x1`` in the returned
    image's pixels (end-exclusive edges, clipped to the image), ``box_labels`` int64 (N,) their
    findings. Box coordinates are given for 1024-pixel images; files of another size
    (downscaled copies) get their boxes scaled to the file's size first. Unreadable images raise
    :class:`~protoexplain.data.image_io.ImageReadError` naming the file when loaded.
    """

    multi_label = True

    def __init__(self, root: str | Path | None, split: str = "train", *,
                 image_size: int | Sequence[int] | None = 224, val_fraction: float = 0.1,
                 seed: int = 0, only_with_boxes: bool = False,
                 boxes: bool | None = None) -> None:
        if root is None:
            raise ValueError("ChestXray14 needs root: the folder holding Data_Entry_2017.csv "
                             "(data.root)")
        self.root = Path(root)
        self.split = check_split(split)
        check_fraction("val_fraction", val_fraction)
        self.image_size = geometry.as_size(image_size)
        self.classes = list(FINDINGS)
        self.num_classes = len(FINDINGS)

        entries_path = self.root / ENTRY_FILE
        entries = read_entries(entries_path)
        list_path = self.root / (TEST_FILE if split == "test" else TRAIN_VAL_FILE)
        names = read_image_list(list_path, entries, entries_path)
        if split != "test":
            patients = sorted({entries[name][0] for name in names})
            parts = stratified_split(patients, [0] * len(patients), val_fraction=val_fraction,
                                     seed=seed)
            chosen = {patients[position] for position in parts[split]}
            names = [name for name in names if entries[name][0] in chosen]

        box_path = self.root / BOX_FILE
        if boxes is True or (boxes is None and box_path.is_file()):
            box_table = read_boxes(box_path, entries, entries_path)
        else:
            box_table = {}
        if only_with_boxes:
            names = [name for name in names if name in box_table]
        self.records = [
            ChestXrayRecord(name=name, patient=entries[name][0], findings=entries[name][1],
                            boxes=tuple(box for box, _ in box_table.get(name, [])),
                            box_findings=tuple(index for _, index in box_table.get(name, [])))
            for name in names
        ]
        self._files = find_image_files(self.root, names)

    @property
    def paths(self) -> list[Path]:
        """The image file of each item."""
        return [self._files[record.name] for record in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def annotation(self, index: int) -> dict[str, Any]:
        """``label`` and ``box_labels`` of an item without reading its image (pair selection
        walks the split looking for images with boxes of given findings)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        record = self.records[index]
        label = torch.zeros(self.num_classes, dtype=torch.float32)
        label[list(record.findings)] = 1.0
        return {"label": label, "box_labels": torch.tensor(record.box_findings, dtype=torch.long)}

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.annotation(index)
        record = self.records[index]
        image = read_image(self._files[record.name])
        height, width = image.shape[-2:]
        scale = torch.tensor([height, height, width, width],
                             dtype=torch.float32) / BOX_REFERENCE_SIZE
        boxes = torch.tensor(record.boxes, dtype=torch.float32).reshape(-1, 4) * scale
        limits = torch.tensor([height, height, width, width], dtype=torch.float32)
        item.update(image=image, index=index, boxes=torch.minimum(boxes.clamp(min=0.0), limits))
        if self.image_size is not None:
            item = geometry.resize(item, self.image_size)
        return item
