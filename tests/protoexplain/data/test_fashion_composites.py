import gzip
import struct

import numpy as np
import pytest
import torch

from protoexplain.data.fashion_composites import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    FashionComposites,
    grid_cells,
    paste_object,
    read_idx,
)


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_part(root, part: str, images: np.ndarray) -> None:
    """One official part's gzipped images and labels (label = index mod 10) under root."""
    root.mkdir(parents=True, exist_ok=True)
    labels = (np.arange(len(images)) % 10).astype(np.uint8)
    (root / f"{part}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    (root / f"{part}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))


def _write_official(root, n_train: int = 60, n_test: int = 20) -> None:
    """Tiny stand-in for the four official files: objects are bright squares of varying size
    with a faint halo (values 1..9) that the default mask threshold leaves out."""
    rng = np.random.default_rng(0)
    for part, n in (("train", n_train), ("t10k", n_test)):
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        for i in range(n):
            half = 4 + i % 8
            images[i, 14 - half - 1 : 14 + half + 1, 14 - half - 1 : 14 + half + 1] = 5
            images[i, 14 - half : 14 + half, 14 - half : 14 + half] = rng.integers(60, 256)
        _write_part(root, part, images)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion")
    _write_official(root)
    return root


def test_read_idx_parses_gzipped_and_plain_files_of_any_type(tmp_path):
    data = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx_bytes(data, 0x0C)))
    (tmp_path / "b").write_bytes(_idx_bytes(data.astype(np.float32), 0x0D))
    assert np.array_equal(read_idx(tmp_path / "a.gz"), data)
    parsed = read_idx(tmp_path / "b")
    assert parsed.dtype == np.float32 and np.array_equal(parsed, data)


@pytest.mark.parametrize("content, message", [
    (b"\x08\x03\x00\x00", "not an IDX file"),
    (bytes([0, 0, 8, 2]) + struct.pack(">2I", 3, 3) + b"\x00" * 8, "need 9"),
    (bytes([0, 0, 8, 3, 0, 0]), "truncated"),
    (b"\x1f\x8b garbage", "corrupt gzip"),
])
def test_read_idx_rejects_corrupt_files_naming_them(tmp_path, content, message):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_missing_files_name_the_file_and_the_debian_package(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        FashionComposites(tmp_path, "train")
    assert "train-images-idx3-ubyte" in str(error.value)
    assert "apt-get install dataset-fashion-mnist" in str(error.value)


def test_items_follow_the_contract(official):
    data = FashionComposites(official, "train", image_size=32, num_samples=5)
    item = data[3]
    assert set(item) == {"image", "label", "index", "object_mask", "boxes", "part_masks",
                         "part_names", "part_keypoints"}
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 32, 32)
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["index"] == 3 and isinstance(item["label"], int)
    assert item["label"] == data.source_indices[3] % 10  # the stand-in's labels
    assert item["object_mask"].dtype == torch.bool and item["object_mask"].shape == (32, 32)
    assert data.classes == list(FASHION_MNIST_CLASSES) and data.num_classes == 10


def test_grid_parts_divide_the_object_frame_and_follow_a_mirrored_object(official):
    # object_scale 1: the frame is the whole 30 px image, cells of 10 px.
    data = FashionComposites(official, "test", image_size=30, object_scale=(1.0, 1.0))
    assert data.part_names[:3] == ("top-left", "top-centre", "top-right")
    for index in range(len(data)):
        item = data[index]
        masks, keypoints = item["part_masks"], item["part_keypoints"]
        assert masks.shape == (9, 30, 30) and item["part_names"] == data.part_names
        assert torch.equal(masks.any(dim=0), item["object_mask"])  # the cells tile the object
        assert (masks.sum(dim=0) <= 1).all()
        for k in torch.nonzero(keypoints[:, 2]).flatten().tolist():
            rows, cols = torch.nonzero(masks[k], as_tuple=True)
            assert keypoints[k, :2].tolist() == pytest.approx([cols.float().mean().item(),
                                                               rows.float().mean().item()])
    # The stand-in objects are squares centred in their frame: every cell is visible, and
    # cell (i, j) lies in rows 10 i .. 10 i + 10 and columns 10 j .. (10 (2 - j) mirrored).
    item = data[0]
    for k in range(9):
        rows, cols = torch.nonzero(item["part_masks"][k], as_tuple=True)
        assert 10 * (k // 3) <= rows.min() and rows.max() < 10 * (k // 3) + 10
    assert FashionComposites(official, "test", grid_parts=0)[0].keys() == {
        "image", "label", "index", "object_mask", "boxes"}


def test_a_mirrored_object_keeps_its_part_names():
    plain = grid_cells(12, 0, 0, 12, 3, flipped=False)
    mirrored = grid_cells(12, 0, 0, 12, 3, flipped=True)
    assert torch.equal(mirrored[0], plain[2]) and torch.equal(mirrored[4], plain[4])
    assert torch.equal(mirrored[6], plain[8])
    assert plain[5].nonzero().min(dim=0).values.tolist() == [4, 8]  # middle-right: rows 4-7


def _write_left_heavy(root, n: int = 24) -> None:
    """Stand-in official files whose every object is an L: a tall bar on the left of the
    frame and a short bar along its top, so a mirrored object is heavier on its right."""
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    images[:, 4:24, 4:12] = 200
    images[:, 4:8, 12:24] = 200
    for part in ("train", "t10k"):
        _write_part(root, part, images)


def _heavier_side(mask: torch.Tensor) -> str:
    cols = torch.nonzero(mask, as_tuple=True)[1].float()
    middle = (cols.min() + cols.max()) / 2
    return "left" if (cols < middle).sum() > (cols > middle).sum() else "right"


def test_mirror_false_keeps_every_object_unmirrored_and_changes_nothing_else(tmp_path):
    _write_left_heavy(tmp_path)
    mirrored = FashionComposites(tmp_path, "test", image_size=40)
    upright = FashionComposites(tmp_path, "test", image_size=40, mirror=False)
    sides = []
    for index in range(len(upright)):
        plain, maybe = upright[index], mirrored[index]
        assert _heavier_side(plain["object_mask"]) == "left"
        sides.append(_heavier_side(maybe["object_mask"]))
        assert torch.equal(plain["boxes"], maybe["boxes"])  # same size and place
        background = ~plain["object_mask"] & ~maybe["object_mask"]
        assert torch.equal(plain["image"][:, background], maybe["image"][:, background])
        if sides[-1] == "left":  # not mirrored: the very same item
            assert torch.equal(plain["image"], maybe["image"])
            assert torch.equal(plain["part_keypoints"], maybe["part_keypoints"])
    assert "right" in sides and "left" in sides
    with pytest.raises(ValueError, match="mirror must be true or false, got 'no'"):
        FashionComposites(tmp_path, "test", mirror="no")


def test_box_is_tight_around_the_object_mask(official):
    data = FashionComposites(official, "test", image_size=48)
    for index in range(len(data)):
        item = data[index]
        rows, cols = torch.nonzero(item["object_mask"], as_tuple=True)
        assert item["boxes"].tolist() == [[rows.min().item(), rows.max().item() + 1,
                                           cols.min().item(), cols.max().item() + 1]]


def test_mask_threshold_leaves_out_the_faint_halo(official):
    # The stand-in objects are squares of value >= 60 framed by a ring of value 5.
    strict = FashionComposites(official, "test", image_size=28, object_scale=(1.0, 1.0))
    loose = FashionComposites(official, "test", image_size=28, object_scale=(1.0, 1.0),
                              mask_threshold=0)
    for index in range(4):
        half = 4 + strict.source_indices[index] % 8
        assert strict[index]["object_mask"].sum() == (2 * half) ** 2
        assert loose[index]["object_mask"].sum() == (2 * half + 2) ** 2


def test_items_are_deterministic_and_independent_of_access_order(official):
    first = FashionComposites(official, "train", num_samples=6, seed=4)
    second = FashionComposites(official, "train", num_samples=6, seed=4)
    forward = [first[i] for i in range(6)]
    backward = [second[i] for i in reversed(range(6))][::-1]
    for a, b in zip(forward, backward, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["object_mask"],
                                                                   b["object_mask"])
        assert a["label"] == b["label"]
    other = FashionComposites(official, "train", num_samples=6, seed=5)
    assert not torch.equal(other[0]["image"], forward[0]["image"])


def test_train_and_val_divide_the_official_training_set_and_test_uses_the_test_set(official):
    train = FashionComposites(official, "train", val_fraction=0.2)
    val = FashionComposites(official, "val", val_fraction=0.2)
    test = FashionComposites(official, "test")
    assert len(train) == 50 and len(val) == 10 and len(test) == 20  # 1 of 6 per class
    assert set(train.source_indices).isdisjoint(val.source_indices)
    assert set(train.source_indices) | set(val.source_indices) == set(range(60))
    assert sorted(test.source_indices) == list(range(20))
    repeated = FashionComposites(official, "val", val_fraction=0.2, num_samples=30)
    assert len(repeated) == 30 and set(repeated.source_indices) == set(val.source_indices)
    per_split = {"train": 7, "test": 3}  # as a config's {train: 7, test: 3}
    assert len(FashionComposites(official, "train", num_samples=per_split)) == 7
    assert len(FashionComposites(official, "test", num_samples=per_split)) == 3
    assert len(FashionComposites(official, "val", val_fraction=0.2, num_samples=per_split)) == 10


def test_paste_object_changes_exactly_the_masked_pixels():
    rng = np.random.default_rng(1)
    background = rng.uniform(0.0, 0.5, size=(20, 24, 3)).astype(np.float32)
    intensity = np.zeros((6, 8), dtype=np.float32)
    intensity[1:5, 2:7] = rng.uniform(0.3, 1.0, size=(4, 5))
    intensity[0, 0] = 0.01  # below the threshold: not part of the object
    image, mask = paste_object(background, intensity, 10, 12, (0.9, 0.2, 1.0), threshold=0.04)
    expected_mask = np.zeros((20, 24), dtype=bool)
    expected_mask[11:15, 14:19] = True
    assert np.array_equal(mask, expected_mask)
    changed = np.any(image != background, axis=2)
    assert np.array_equal(changed, expected_mask)
    alpha = 0.5 + 0.5 * intensity[1, 2]
    pixel = alpha * intensity[1, 2] * np.array([0.9, 0.2, 1.0]) + (1 - alpha) * background[11, 14]
    assert np.allclose(image[11, 14], pixel)


def test_paste_object_outside_the_background_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        paste_object(np.zeros((10, 10, 3), np.float32), np.ones((4, 4), np.float32), 8, 0,
                     (1, 1, 1), threshold=0.1)


def test_unknown_split_is_rejected_with_the_allowed_values(official):
    with pytest.raises(ValueError, match="'train', 'val', 'test'"):
        FashionComposites(official, "validation")


def test_real_fashion_mnist_from_the_debian_package():
    """Needs ``apt-get install dataset-fashion-mnist`` (``make setup`` installs it)."""
    train = FashionComposites(split="train")
    val = FashionComposites(split="val")
    test = FashionComposites(split="test", num_samples=50)
    assert train.root == FASHION_MNIST_DIR
    assert (len(train), len(val), len(test)) == (54000, 6000, 50)
    labels = [test[i]["label"] for i in range(50)]
    assert len(set(labels)) > 5
    item = val[0]
    assert item["image"].shape == (3, 64, 64)
    assert 0.05 < item["object_mask"].float().mean() < 0.9
