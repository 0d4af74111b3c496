import pytest
import torch

from protoexplain.data import geometry


def _dot_item(height=40, width=60, dot=(23, 14), square=(5, 15, 30, 44)):
    """Image with a red dot (disc of radius 2 centred on pixel x, y = ``dot``) and a green
    square that is also the object mask and the box."""
    image = torch.zeros(3, height, width)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    image[0][(xs - dot[0]) ** 2 + (ys - dot[1]) ** 2 <= 4] = 1.0
    y0, y1, x0, x1 = square
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    image[1][mask] = 1.0
    return {
        "image": image,
        "label": 2,
        "index": 7,
        "object_mask": mask,
        "part_masks": torch.stack([mask, ~mask]),
        "part_names": ("square", "rest"),
        "part_keypoints": torch.tensor([[dot[0], dot[1], 1.0], [0.0, 0.0, 0.0]]),
        "boxes": torch.tensor([square], dtype=torch.float32),
    }


def _centroid(channel: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted (x, y) of a channel in pixel-centre coordinates."""
    ys, xs = torch.meshgrid(torch.arange(channel.shape[0]), torch.arange(channel.shape[1]),
                            indexing="ij")
    total = channel.sum()
    return torch.stack([(channel * xs).sum() / total, (channel * ys).sum() / total])


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("dot", [(23, 14), (4, 4), (55, 35)])
@pytest.mark.parametrize("size", [(60, 150), (20, 25), (33, 47), (40, 60)])
def test_resize_moves_a_dot_onto_its_resized_keypoint(size, dot):
    out = geometry.resize(_dot_item(dot=dot), size)
    assert out["image"].shape == (3, *size) and out["object_mask"].shape == size
    keypoint = out["part_keypoints"][0]
    assert keypoint[2] == 1
    assert torch.allclose(_centroid(out["image"][0]), keypoint[:2], atol=0.1)
    assert _iou(out["object_mask"], out["image"][1] > 0.5) > 0.95
    sy, sx = size[0] / 40, size[1] / 60
    assert torch.allclose(out["boxes"], torch.tensor([[5 * sy, 15 * sy, 30 * sx, 44 * sx]]))
    assert out["label"] == 2 and out["index"] == 7 and out["part_names"] == ("square", "rest")


def test_crop_shifts_everything_and_hides_keypoints_cut_away():
    item = _dot_item()
    out = geometry.crop(item, (10, 40, 20, 50))
    assert out["image"].shape == (3, 30, 30)
    assert torch.equal(out["image"], item["image"][:, 10:40, 20:50])
    assert out["part_keypoints"][0].tolist() == [3.0, 4.0, 1.0]
    assert torch.equal(out["object_mask"], item["object_mask"][10:40, 20:50])
    assert out["boxes"].tolist() == [[0.0, 5.0, 10.0, 24.0]]  # clipped at the crop's top
    hidden = geometry.crop(item, (20, 40, 0, 60))  # the dot's row 14 is cut away
    assert hidden["part_keypoints"][0].tolist() == [0.0, 0.0, 0.0]
    assert geometry.crop(item, (30, 40, 0, 60))["boxes"].shape == (0, 4)  # box cut away


def test_crop_outside_the_image_is_an_error():
    with pytest.raises(ValueError, match="does not overlap"):
        geometry.crop(_dot_item(), (50, 60, 0, 10))


def test_hflip_mirrors_pixels_keypoints_boxes_and_can_swap_part_rows():
    item = _dot_item()
    out = geometry.hflip(item)
    assert torch.equal(out["image"], item["image"].flip(-1))
    assert out["part_keypoints"][0].tolist() == [60 - 1 - 23, 14, 1]
    assert out["boxes"].tolist() == [[5, 15, 60 - 44, 60 - 30]]
    swapped = geometry.hflip(item, mirror=[1, 0])
    assert torch.equal(swapped["part_masks"][0], out["part_masks"][1])
    assert torch.equal(swapped["part_keypoints"][1], out["part_keypoints"][0])


def test_mirror_permutation_pairs_left_and_right_parts():
    names = ("back", "left eye", "Left_Wing", "right eye", "Right_Wing", "tail", "leftover")
    assert geometry.mirror_permutation(names) == [0, 3, 4, 1, 2, 5, 6]


@pytest.mark.parametrize("matrix", [
    geometry.rotation_matrix((40, 60), 15.0),
    geometry.rotation_matrix((40, 60), -12.0, fill_frame=False),
    geometry.shear_matrix((40, 60), 10.0, "x"),
    geometry.shear_matrix((40, 60), -8.0, "y"),
    geometry.skew_matrix((40, 60), 0, 9.0),
    geometry.skew_matrix((40, 60), 9, 12.0),
], ids=["rotate", "rotate-nofill", "shear-x", "shear-y", "tilt", "corner"])
@pytest.mark.parametrize("dot", [(23, 14), (42, 26)])
def test_warp_keeps_dots_on_keypoints_and_masks_on_their_pixels(matrix, dot):
    out = geometry.warp(_dot_item(dot=dot), matrix)
    keypoint = out["part_keypoints"][0]
    assert keypoint[2] == 1
    assert torch.allclose(_centroid(out["image"][0]), keypoint[:2], atol=0.1)
    assert _iou(out["object_mask"], out["image"][1] > 0.5) > 0.9
    assert torch.equal(out["part_masks"][0], out["object_mask"])
    y0, y1, x0, x1 = out["boxes"][0].tolist()
    rows, cols = torch.nonzero(out["object_mask"], as_tuple=True)
    assert rows.min() >= y0 - 0.5 and rows.max() < y1 + 0.5
    assert cols.min() >= x0 - 0.5 and cols.max() < x1 + 0.5


def test_warp_hides_keypoints_moved_off_the_image():
    shift = torch.tensor([[1.0, 0, 50], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    out = geometry.warp(_dot_item(), shift)
    assert out["part_keypoints"][0].tolist() == [0.0, 0.0, 0.0]
    assert out["boxes"].shape == (0, 4)


@pytest.mark.parametrize("make", [
    lambda: geometry.rotation_matrix((40, 60), 15.0),
    lambda: geometry.shear_matrix((40, 60), -10.0, "x"),
    lambda: geometry.shear_matrix((40, 60), 10.0, "y"),
], ids=["rotate", "shear-x", "shear-y"])
def test_rotation_and_shear_zoom_in_to_leave_no_empty_corners(make):
    blank = {"image": torch.ones(3, 40, 60)}
    assert geometry.warp(blank, make())["image"].min() > 0.5


def test_augmentation_is_reproducible_from_a_generator_and_varies():
    augment = geometry.ProtoPNetAugmentation(mirror=[1, 0])
    item = _dot_item()
    first = augment(item, torch.Generator().manual_seed(5))
    again = augment(item, torch.Generator().manual_seed(5))
    assert torch.equal(first["image"], again["image"])
    assert torch.equal(first["part_keypoints"], again["part_keypoints"])
    generator = torch.Generator().manual_seed(6)
    images = [augment(item, generator)["image"] for _ in range(5)]
    assert not all(torch.equal(images[0], other) for other in images[1:])


def test_augmentation_keeps_masks_and_keypoints_aligned_with_the_image():
    augment = geometry.ProtoPNetAugmentation()
    generator = torch.Generator().manual_seed(0)
    for _ in range(12):
        out = augment(_dot_item(), generator)
        assert out["image"].shape == (3, 40, 60)
        assert _iou(out["object_mask"], out["image"][1] > 0.5) > 0.9
        if out["part_keypoints"][0, 2] == 1:
            assert torch.allclose(_centroid(out["image"][0]), out["part_keypoints"][0, :2],
                                  atol=0.1)


def test_as_size_accepts_an_int_a_pair_or_none():
    assert geometry.as_size(32) == (32, 32)
    assert geometry.as_size([24, 40]) == (24, 40)
    assert geometry.as_size(None) is None
    for bad in (0, (3,), 2.5, True, "ab"):
        with pytest.raises(ValueError, match="image_size"):
            geometry.as_size(bad)
