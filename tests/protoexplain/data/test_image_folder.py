import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from protoexplain.data.image_folder import ImageFolder
from protoexplain.data.image_io import ImageReadError


def _write(path, kind: str, seed: int) -> None:
    """One small image file of a given pixel format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    height, width = 10 + seed % 7, 12 + seed % 5
    rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    if kind == "jpeg":
        cv2.imwrite(str(path), rgb)
    elif kind == "grey":
        cv2.imwrite(str(path), rgb[:, :, 0])
    elif kind == "rgba":
        Image.fromarray(np.dstack([rgb, rgb[:, :, 0]]), "RGBA").save(path)
    elif kind == "palette":
        Image.fromarray(rgb).convert("P").save(path)
    elif kind == "16bit":
        cv2.imwrite(str(path), rng.integers(0, 65536, size=(height, width), dtype=np.uint16))
    else:
        raise ValueError(kind)


KINDS = {"jpeg": ".jpg", "grey": ".png", "rgba": ".png", "palette": ".png", "16bit": ".png"}


def _write_classes(folder, classes=("cat", "dog", "owl"), per_class=10) -> None:
    for c, name in enumerate(classes):
        for i in range(per_class):
            kind = list(KINDS)[i % len(KINDS)]
            _write(folder / name / f"{kind}_{i}{KINDS[kind]}", kind, seed=10 * c + i)


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    root = tmp_path_factory.mktemp("flat")
    _write_classes(root)
    (root / "dog" / "notes.txt").write_text("not an image")
    _write(root / "dog" / ".hidden" / "skip.png", "grey", seed=1)
    _write(root / "owl" / "nested" / "deep.JPG", "jpeg", seed=2)
    return root


def test_flat_folder_is_split_per_class_deterministically(flat):
    parts = {s: ImageFolder(flat, s, val_fraction=0.2, test_fraction=0.2) for s in
             ("train", "val", "test")}
    assert parts["train"].classes == ["cat", "dog", "owl"] and parts["train"].num_classes == 3
    assert parts["train"].layout == "flat"
    paths = {s: set(d.paths) for s, d in parts.items()}
    assert paths["train"].isdisjoint(paths["val"]) and paths["train"].isdisjoint(paths["test"])
    assert paths["val"].isdisjoint(paths["test"])
    every = {p for p in flat.rglob("*") if p.is_file() and p.suffix != ".txt"
             and ".hidden" not in p.parts}
    assert paths["train"] | paths["val"] | paths["test"] == every
    per_class = [[label for _, label in parts[s].samples] for s in ("val", "test")]
    assert [sorted(labels) for labels in per_class] == [[0, 0, 1, 1, 2, 2]] * 2
    again = ImageFolder(flat, "val", val_fraction=0.2, test_fraction=0.2)
    assert again.paths == parts["val"].paths
    other = ImageFolder(flat, "val", val_fraction=0.2, test_fraction=0.2, split_seed=9)
    assert other.paths != parts["val"].paths


def test_every_pixel_format_loads_as_a_resized_rgb_item(flat):
    data = ImageFolder(flat, "train", image_size=(16, 20), val_fraction=0.0, test_fraction=0.0)
    assert len(data) == 31
    for index in range(len(data)):
        item = data[index]
        assert set(item) == {"image", "label", "index"} and item["index"] == index
        assert item["image"].shape == (3, 16, 20) and item["image"].dtype == torch.float32
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0


def test_original_size_is_kept_without_image_size(flat):
    data = ImageFolder(flat, "train", image_size=None, val_fraction=0.0, test_fraction=0.0)
    path = data.paths[0]
    assert data[0]["image"].shape[1:] == cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2]


def test_augmentation_keeps_the_size_and_changes_the_pixels(flat):
    data = ImageFolder(flat, "train", image_size=24, augment=True)
    plain = ImageFolder(flat, "train", image_size=24)
    torch.manual_seed(0)
    augmented = data[0]["image"]
    assert augmented.shape == (3, 24, 24) and not torch.equal(augmented, plain[0]["image"])


def test_split_folders_with_val_are_used_as_they_are(tmp_path):
    for split, count in (("train", 4), ("val", 2), ("test", 3)):
        _write_classes(tmp_path / split, per_class=count)
    data = {s: ImageFolder(tmp_path, s) for s in ("train", "val", "test")}
    assert data["train"].layout == "split folders"
    assert [len(d) for d in data.values()] == [12, 6, 9]
    assert all(p.parent.parent.name == "val" for p in data["val"].paths)


def test_split_folders_without_val_hold_out_part_of_train(tmp_path):
    _write_classes(tmp_path / "train", per_class=10)
    _write_classes(tmp_path / "test", classes=("owl",), per_class=2)
    train, val = ImageFolder(tmp_path, "train"), ImageFolder(tmp_path, "val")
    assert (len(train), len(val)) == (27, 3)
    assert set(train.paths).isdisjoint(val.paths)
    test = ImageFolder(tmp_path, "test")
    assert [label for _, label in test.samples] == [2, 2]  # owl keeps its training label


@pytest.mark.parametrize("layout, message", [
    ({"train/cat": 1, "train/dog": 1}, "has train/ but no test/ folder"),
    ({"test/cat": 1}, "has a 'test' folder but no 'train' folder"),
    ({"train/cat": 1, "train/dog": 1, "test/cat": 1, "test/emu": 1}, "emu has no counterpart"),
    ({"cat": 2}, "holds one class folder .'cat'.: a classifier needs at least two classes"),
    ({"cat": 1, "dog": 0}, "dog holds no image files"),
    ({}, "no class folders"),
])
def test_malformed_layouts_are_errors_naming_the_folder(tmp_path, layout, message):
    for folder, count in layout.items():
        (tmp_path / folder).mkdir(parents=True)
        for i in range(count):
            _write(tmp_path / folder / f"{i}.png", "grey", seed=i)
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        ImageFolder(tmp_path, "test")


def test_missing_root_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolder(tmp_path / "absent", "train")
    with pytest.raises(ValueError, match="ImageFolder needs root"):
        ImageFolder(None, "train")


def test_corrupt_image_raises_naming_the_file(tmp_path):
    _write_classes(tmp_path, per_class=3)
    data = ImageFolder(tmp_path, "train", val_fraction=0.0, test_fraction=0.0)
    data.paths[2].write_bytes(b"garbage")
    with pytest.raises(ImageReadError, match=data.paths[2].name):
        data[2]


def test_skip_policy_leaves_unreadable_files_out_and_counts_them(tmp_path):
    _write_classes(tmp_path, per_class=3)
    (tmp_path / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    (tmp_path / "owl" / "empty.png").write_bytes(b"")
    data = ImageFolder(tmp_path, "train", val_fraction=0.0, test_fraction=0.0,
                       on_bad_image="skip", progress=False)
    assert data.num_skipped == 2 and len(data) == 9
    assert sorted(p.name for p, _ in data.skipped) == ["broken.jpg", "empty.png"]
    assert all("broken.jpg" in reason or "empty.png" in reason for _, reason in data.skipped)
    assert [data[i]["index"] for i in range(len(data))] == list(range(9))


def test_unknown_split_is_rejected_with_the_allowed_values(flat):
    with pytest.raises(ValueError, match="'train', 'val', 'test'"):
        ImageFolder(flat, "holdout")
