"""A user's own images, one folder per class, of any size and pixel format."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from protoexplain.data import geometry
from protoexplain.data.image_io import check_bad_image_policy, drop_unreadable, read_image
from protoexplain.data.splits import (
    SPLITS,
    check_classes_have_items,
    check_fraction,
    check_split,
    stratified_split,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif",
                    ".pbm", ".pgm", ".ppm", ".pnm")
"""File name endings (any case) taken as images; other files are ignored."""


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden files and folders left out), sorted."""
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


class ImageFolder(Dataset):
    """Class-per-folder images, split into train/val/test.

    Two layouts are recognised:

    - **split folders**: ``root/train/<class>/...``, ``root/test/<class>/...`` and optionally
      ``root/val/<class>/...``. Classes are the folders of ``train``; ``val`` and ``test``
      may hold a subset of them. Without ``val/``, the validation split is ``val_fraction`` of
      each training class (the rest trains).
    - **flat**: ``root/<class>/...``. Each class is divided: ``val_fraction`` to validation,
      ``test_fraction`` to test, the rest to training.

    Held-out items are chosen by a hash of their path relative to the split folder and
    ``split_seed`` (:func:`~protoexplain.data.splits.stratified_split`): the same files give
    the same split on every machine. Classes are numbered in sorted folder-name order; files
    are found recursively inside each class folder by their ending (:data:`IMAGE_EXTENSIONS`).

    Images may be grey, colour, RGBA (alpha composited over ``alpha_background``), palette, or
    16-bit (:func:`~protoexplain.data.image_io.read_image`); each is resized to
    ``image_size`` (aspect not kept; None keeps the file's size) and, with ``augment``, given
    :class:`~protoexplain.data.geometry.ProtoPNetAugmentation`.
    Items: ``image`` (3, H, W) float32 in [0, 1], ``label``, ``index`` (no ground truth).

    ``on_bad_image``: ``"raise"`` (an unreadable file raises
    :class:`~protoexplain.data.image_io.ImageReadError` naming it when its item is loaded) or
    ``"skip"`` (every file of the split is decoded once at construction; failures are left
    out, listed in ``skipped`` as (path, reason) and counted by ``num_skipped``).
    """

    def __init__(
        self,
        root: str | Path | None,
        split: str = "train",
        *,
        image_size: int | Sequence[int] | None = 224,
        augment: bool = False,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        alpha_background: float = 1.0,
        on_bad_image: str = "raise",
        progress: bool = True,
    ) -> None:
        if root is None:
            raise ValueError("ImageFolder needs root: the folder of class folders (data.root)")
        self.root = Path(root)
        self.split = check_split(split)
        check_fraction("val_fraction", val_fraction)
        check_fraction("test_fraction", test_fraction)
        check_bad_image_policy(on_bad_image)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        self.image_size = geometry.as_size(image_size)
        self.alpha_background = alpha_background
        self.augmentation = geometry.ProtoPNetAugmentation() if augment else None

        if (self.root / "train").is_dir():
            self.layout = "split folders"
            samples = self._from_split_folders(val_fraction, split_seed)
        else:
            present = [name for name in SPLITS if (self.root / name).is_dir()]
            if present:
                raise FileNotFoundError(
                    f"{self.root} has a {present[0]!r} folder but no 'train' folder: use either "
                    f"train/, test/ (and optionally val/) or one folder per class"
                )
            self.layout = "flat"
            samples = self._from_flat_folder(val_fraction, test_fraction, split_seed)

        self.skipped: list[tuple[Path, str]] = []
        """(file, reason) for each unreadable file ``on_bad_image="skip"`` found."""
        self.num_skipped = 0
        """How many items ``on_bad_image="skip"`` left out."""
        if on_bad_image == "skip":
            kept, self.skipped = drop_unreadable(
                samples, lambda sample: (sample[0],), progress=progress,
                description=f"checking {split} images in {self.root}")
            self.num_skipped = len(samples) - len(kept)
            samples = kept
        if self.split == "train":
            check_classes_have_items("ImageFolder", "train", [label for _, label in samples],
                                     self.classes, self.num_skipped)
        self.samples = samples
        """(file, label) of each item."""

    def _class_files(self, folder: Path) -> dict[str, list[Path]]:
        """Class name -> its image files, for each class folder in ``folder``."""
        return {d.name: _image_files(d) for d in _visible_dirs(folder)}

    def _set_classes(self, folder: Path, files: dict[str, list[Path]]) -> None:
        if not files:
            raise FileNotFoundError(f"no class folders in {folder}")
        if len(files) == 1:
            raise ValueError(f"{folder} holds one class folder ({next(iter(files))!r}): a "
                             "classifier needs at least two classes, one folder each")
        for name, paths in files.items():
            if not paths:
                raise FileNotFoundError(
                    f"class folder {folder / name} holds no image files "
                    f"(recognised endings: {' '.join(IMAGE_EXTENSIONS)})")
        self.classes = list(files)
        self.num_classes = len(self.classes)

    def _from_split_folders(self, val_fraction: float, seed: int) -> list[tuple[Path, int]]:
        train_dir = self.root / "train"
        train_files = self._class_files(train_dir)
        self._set_classes(train_dir, train_files)
        label = {name: i for i, name in enumerate(self.classes)}
        if self.split == "train" or (self.split == "val" and not (self.root / "val").is_dir()):
            samples = [(p, label[name]) for name, paths in train_files.items() for p in paths]
            if (self.root / "val").is_dir():
                return samples
            parts = stratified_split([p.relative_to(train_dir).as_posix() for p, _ in samples],
                                     [y for _, y in samples], val_fraction=val_fraction,
                                     seed=seed)
            return [samples[i] for i in parts[self.split]]
        folder = self.root / self.split
        if not folder.is_dir():
            raise FileNotFoundError(f"{self.root} has train/ but no {self.split}/ folder")
        samples = []
        for name, paths in self._class_files(folder).items():
            if name not in label:
                raise ValueError(f"class folder {folder / name} has no counterpart in {train_dir}")
            samples += [(p, label[name]) for p in paths]
        return samples

    def _from_flat_folder(self, val_fraction: float, test_fraction: float,
                          seed: int) -> list[tuple[Path, int]]:
        files = self._class_files(self.root)
        self._set_classes(self.root, files)
        samples = [(p, label) for label, paths in enumerate(files.values()) for p in paths]
        parts = stratified_split([p.relative_to(self.root).as_posix() for p, _ in samples],
                                 [y for _, y in samples], val_fraction=val_fraction,
                                 test_fraction=test_fraction, seed=seed)
        return [samples[i] for i in parts[self.split]]

    @property
    def paths(self) -> list[Path]:
        """The image file of each item."""
        return [path for path, _ in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        path, label = self.samples[index]
        item: dict[str, Any] = {
            "image": read_image(path, alpha_background=self.alpha_background),
            "label": label,
            "index": index,
        }
        if self.image_size is not None:
            item = geometry.resize(item, self.image_size)
        if self.augmentation is not None:
            item = self.augmentation(item)
        return item
