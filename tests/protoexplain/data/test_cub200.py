import shutil

import cv2
import numpy as np
import pytest
import torch

from protoexplain.data.cub200 import CUB200, CUBFormatError
from protoexplain.data.image_io import ImageReadError
from tests.protoexplain.data.cub_fixture import GREEN_PART, PART_NAMES, RED_PART, write_cub

RED, GREEN = PART_NAMES.index(RED_PART), PART_NAMES.index(GREEN_PART)


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    """A release that tests only read."""
    return write_cub(tmp_path_factory.mktemp("cub"))


@pytest.fixture
def fresh(tmp_path):
    """A release a test may damage."""
    return write_cub(tmp_path)


def _dot_centre(image: torch.Tensor, channel: int) -> torch.Tensor | None:
    """Centroid (x, y) of the pixels of pure colour ``channel`` (0 red, 1 green)."""
    others = [c for c in range(3) if c != channel]
    weight = (image[channel] - image[others].amax(dim=0)).clamp(min=0)
    weight = (weight - 0.2).clamp(min=0)  # above the noise of the dark background
    if weight.sum() == 0:
        return None
    ys, xs = torch.meshgrid(torch.arange(image.shape[1]), torch.arange(image.shape[2]),
                            indexing="ij")
    return torch.stack([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_metadata_is_parsed_with_part_names_containing_spaces(cub):
    data = CUB200(cub.root, "test", progress=False)
    assert data.classes == cub.class_names and data.num_classes == 3
    assert data.part_names == PART_NAMES and "left eye" in data.part_names
    expected = [im for im in cub.images if not im.is_training]
    assert [p.relative_to(cub.root / "images").as_posix() for p in data.paths] == [
        im.name for im in expected]
    assert [data[i]["label"] for i in range(len(data))] == [im.label for im in expected]


def test_val_is_drawn_from_the_training_images_per_class_and_deterministically(cub):
    train = CUB200(cub.root, "train")
    val = CUB200(cub.root, "val")
    official_train = {im.name for im in cub.images if im.is_training}
    train_names = {p.relative_to(cub.root / "images").as_posix() for p in train.paths}
    val_names = {p.relative_to(cub.root / "images").as_posix() for p in val.paths}
    assert train_names.isdisjoint(val_names) and train_names | val_names == official_train
    assert sorted(r.label for r in val.records) == [0, 1, 2]  # round(5 * 0.1) = 1 per class
    assert CUB200(cub.root, "val").paths == val.paths
    assert CUB200(cub.root, "val", split_seed=1).paths != val.paths or len(val) == 0
    assert len(CUB200(cub.root, "train", val_fraction=0.0)) == len(official_train)


def test_items_follow_the_contract(cub):
    item = CUB200(cub.root, "train")[0]
    assert set(item) == {"image", "label", "index", "part_names", "part_keypoints", "boxes",
                         "object_mask"}
    assert item["image"].shape == (3, 224, 224) and item["image"].dtype == torch.float32
    assert item["part_keypoints"].shape == (15, 3)
    assert item["part_keypoints"].dtype == torch.float32
    assert item["boxes"].shape == (1, 4) and item["object_mask"].shape == (224, 224)
    without = CUB200(cub.root, "train", segmentations=False)[0]
    assert "object_mask" not in without


def test_uncropped_items_reproduce_the_annotation_files(cub):
    data = CUB200(cub.root, "test", crop_to_box=False, image_size=None)
    soft = CUB200(cub.root, "test", crop_to_box=False, image_size=None,
                  segmentation_threshold=128)
    for index, im in enumerate(im for im in cub.images if not im.is_training):
        item = data[index]
        assert item["image"].shape[1:] == im.size
        assert torch.equal(item["part_keypoints"], torch.tensor(im.keypoints,
                                                                dtype=torch.float32))
        assert item["part_keypoints"][PART_NAMES.index("tail")].tolist() == [0, 0, 0]
        x, y, w, h = im.box
        assert item["boxes"].tolist() == [[y, y + h, x, x + w]]
        assert torch.equal(item["object_mask"], torch.from_numpy(im.segmentation > 0))
        assert torch.equal(soft[index]["object_mask"], torch.from_numpy(im.segmentation > 128))


@pytest.mark.parametrize("image_size", [None, (64, 80), 40])
def test_crop_to_box_and_resize_carry_keypoints_masks_and_boxes(cub, image_size):
    data = CUB200(cub.root, "train", crop_to_box=True, image_size=image_size,
                  segmentation_threshold=128)
    for index in range(len(data)):
        item = data[index]
        height, width = item["image"].shape[1:]
        record = data.records[index]
        if image_size is None:
            y0, y1, x0, x1 = record.box
            assert (height, width) == (y1 - y0, x1 - x0)
        assert item["boxes"].tolist() == [[0, height, 0, width]]
        for part, channel in ((RED, 0), (GREEN, 1)):
            keypoint = item["part_keypoints"][part]
            assert keypoint[2] == 1
            assert torch.allclose(_dot_centre(item["image"], channel), keypoint[:2], atol=0.3)
        bird = item["image"][2] > 0.5  # the fixture's birds are cyan to blue
        assert _iou(item["object_mask"], bird) > 0.85


def test_augmentation_moves_annotations_with_the_pixels_and_swaps_left_and_right(cub):
    data = CUB200(cub.root, "train", image_size=64, augment=True, segmentation_threshold=128)
    plain = CUB200(cub.root, "train", image_size=64)
    torch.manual_seed(3)
    flipped_seen, unflipped_seen = False, False
    for draw in range(16):
        item = data[draw % len(data)]
        assert item["image"].shape == (3, 64, 64)
        assert _iou(item["object_mask"], item["image"][2] > 0.5) > 0.8
        red, green = _dot_centre(item["image"], 0), _dot_centre(item["image"], 1)
        left, right = item["part_keypoints"][RED], item["part_keypoints"][GREEN]
        if red is None or green is None or left[2] == 0 or right[2] == 0:
            continue  # a dot pushed out of the frame
        if torch.allclose(red, left[:2], atol=0.5):
            unflipped_seen = True
            assert torch.allclose(green, right[:2], atol=0.5)
        else:  # mirrored: the red dot is now where a right eye would be
            flipped_seen = True
            assert torch.allclose(red, right[:2], atol=0.5)
            assert torch.allclose(green, left[:2], atol=0.5)
    assert flipped_seen and unflipped_seen
    assert torch.equal(plain[0]["image"], plain[0]["image"])  # the push set is not augmented


def test_root_may_be_the_parent_folder_and_segmentations_may_sit_inside(fresh):
    assert len(CUB200(fresh.root.parent, "test")) == 6
    shutil.move(str(fresh.segmentations), str(fresh.root / "segmentations"))
    data = CUB200(fresh.root, "test")
    assert data.segmentations_dir == fresh.root / "segmentations"
    assert "object_mask" in data[0]


def test_missing_release_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="images.txt"):
        CUB200(tmp_path, "train")
    with pytest.raises(ValueError, match="CUB200 needs root"):
        CUB200(None, "train")


def _edit(path, change):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(change(lines)) + "\n")


@pytest.mark.parametrize("file, change, message", [
    ("images.txt", lambda ls: ls[:2] + ["3"] + ls[3:],
     r"images.txt:3: expected '<image_id> <image_name>'"),
    ("image_class_labels.txt", lambda ls: ls + ["999 1"],
     r"image_class_labels.txt:22: image id 999 is not listed in .*images.txt"),
    ("image_class_labels.txt", lambda ls: ls[:4] + ["5 7"] + ls[5:],
     r"image_class_labels.txt:5: class id 7 is not listed"),
    ("classes.txt", lambda ls: ls + ["2 duplicate"],
     r"classes.txt:4: id 2 already given on line 2"),
    ("train_test_split.txt", lambda ls: ls[:-1], r"train_test_split.txt: no entry for image id 21"),
    ("train_test_split.txt", lambda ls: ls[:1] + ["2 yes"] + ls[2:],
     r"train_test_split.txt:2: expected .*\(expected 0 or 1"),
    ("bounding_boxes.txt", lambda ls: ls[:1] + ["2 1.0 1.0 -4.0 5.0"] + ls[2:],
     r"bounding_boxes.txt:2: a box needs"),
    ("parts/part_locs.txt", lambda ls: ls[:6] + ["1 16 3.0 4.0 1"] + ls[7:],
     r"part_locs.txt:7: part id 16 is out of range .*1..15"),
    ("parts/part_locs.txt", lambda ls: ls[:6] + ["1 7 3.0 4.0 2"] + ls[7:],
     r"part_locs.txt:7: expected '<image_id> <part_id> <x> <y> <visible>'"),
    ("parts/part_locs.txt", lambda ls: ls[:6] + ls[7:], r"no location for image id 1 part 7"),
    ("parts/part_locs.txt", lambda ls: ls + ["1 3 0 0 0"], r"part_locs.txt:316: image 1 part 3"),
])
def test_format_errors_name_the_file_and_line(fresh, file, change, message):
    _edit(fresh.root / file, change)
    with pytest.raises(CUBFormatError, match=message):
        CUB200(fresh.root, "train")


def test_corrupt_image_raises_naming_the_file(fresh):
    data = CUB200(fresh.root, "test")
    data.paths[1].write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageReadError, match=data.paths[1].name):
        data[1]


def test_skip_policy_leaves_unreadable_files_out_and_counts_them(fresh):
    before = CUB200(fresh.root, "test")
    bad_image = before.paths[0]
    bad_image.write_bytes(b"")
    bad_mask = (fresh.segmentations / fresh.images[-1].name).with_suffix(".png")
    bad_mask.write_bytes(b"junk")
    data = CUB200(fresh.root, "test", on_bad_image="skip", progress=False)
    assert data.num_skipped == 2 and len(data) == len(before) - 2
    assert sorted(path for path, _ in data.skipped) == sorted([bad_image, bad_mask])
    assert bad_image not in data.paths
    for index in range(len(data)):
        assert data[index]["index"] == index


def test_segmentation_of_another_size_is_an_error_naming_both_files(fresh):
    mask_path = (fresh.segmentations / fresh.images[0].name).with_suffix(".png")
    cv2.imwrite(str(mask_path), np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match=f"{mask_path.name}.*{fresh.images[0].name}"):
        CUB200(fresh.root, "train", val_fraction=0.0)[0]


def test_unknown_split_and_policy_are_rejected_with_the_allowed_values(cub):
    with pytest.raises(ValueError, match="'train', 'val', 'test'"):
        CUB200(cub.root, "push")
    with pytest.raises(ValueError, match="'raise', 'skip'"):
        CUB200(cub.root, "train", on_bad_image="warn")


def _set_image_annotations(fixture, image_id: int, box: tuple[float, float, float, float],
                           points: list[tuple[float, float]]) -> None:
    """Rewrite ``bounding_boxes.txt`` and ``part_locs.txt`` for one image: its box (x, y,
    width, height) and its first parts at ``points`` (visible), the others invisible."""
    root = fixture.root
    boxes = (root / "bounding_boxes.txt").read_text().splitlines()
    boxes = [f"{image_id} " + " ".join(map(str, box)) if line.split()[0] == str(image_id)
             else line for line in boxes]
    (root / "bounding_boxes.txt").write_text("\n".join(boxes) + "\n")
    locations = []
    for line in (root / "parts" / "part_locs.txt").read_text().splitlines():
        image, part = map(int, line.split()[:2])
        if image == image_id:
            x, y, visible = (*points[part - 1], 1) if part <= len(points) else (0.0, 0.0, 0)
            line = f"{image} {part} {x} {y} {visible}"
        locations.append(line)
    (root / "parts" / "part_locs.txt").write_text("\n".join(locations) + "\n")


@pytest.mark.parametrize("box", [(10, 8, 30, 25), (10.3, 8.6, 30.4, 25.5)],
                         ids=["whole-pixel box", "fractional box"])
def test_a_visible_part_on_any_edge_of_the_box_stays_visible_after_cropping(fresh, box):
    x, y, width, height = box
    right, bottom = x + width, y + height
    middle_x, middle_y = x + width / 2, y + height / 2
    points = [(x, middle_y), (right, middle_y), (middle_x, y), (middle_x, bottom),  # edges
              (x, y), (right, y), (x, bottom), (right, bottom),                     # corners
              (middle_x, middle_y),                                                 # inside
              (x - 3, middle_y)]                                                    # outside
    image_id = next(im.image_id for im in fresh.images if im.is_training)
    _set_image_annotations(fresh, image_id, box, points)
    data = CUB200(fresh.root, "train", val_fraction=0.0, image_size=None)
    index = next(i for i, r in enumerate(data.records) if r.image_id == image_id)
    item = data[index]
    crop_height, crop_width = item["image"].shape[1:]
    left, top = int(x), int(y)  # floor of the box's origin: where the crop starts
    keypoints = item["part_keypoints"]
    assert keypoints[:9, 2].tolist() == [1.0] * 9, keypoints
    assert keypoints[9].tolist() == [0, 0, 0]  # a part outside the box may still be cut away
    xs, ys = keypoints[:9, 0], keypoints[:9, 1]
    # on the crop's pixels: pixel i covers [i - 0.5, i + 0.5) around its centre
    assert xs.min() >= -0.5 and xs.max() < crop_width - 0.5
    assert ys.min() >= -0.5 and ys.max() < crop_height - 0.5
    assert xs[0] == pytest.approx(x - left) and ys[2] == pytest.approx(y - top)  # left, top
    assert xs[1] > crop_width - 1.5 and ys[3] > crop_height - 1.5  # right, bottom: last pixel
    assert (xs[8], ys[8]) == (pytest.approx(middle_x - left), pytest.approx(middle_y - top))
    resized = CUB200(fresh.root, "train", val_fraction=0.0, image_size=32)[index]
    assert resized["part_keypoints"][:9, 2].tolist() == [1.0] * 9
