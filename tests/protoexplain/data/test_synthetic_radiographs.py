"""SyntheticRadiographs: determinism, item contract, lesions and their boxes."""

import itertools

import numpy as np
import pytest
import torch

from protoexplain.data import SyntheticRadiographs, collate
from protoexplain.data.synthetic_radiographs import FINDINGS

SMALL = dict(num_samples=40, image_size=48)


def assert_items_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_same_seed_split_and_index_give_identical_items_whatever_the_order_or_cache():
    first = SyntheticRadiographs(seed=3, **SMALL)
    items = [first[i] for i in range(6)]
    again = SyntheticRadiographs(seed=3, cache=False, **SMALL)
    for i in reversed(range(6)):
        assert_items_equal(items[i], again[i])
    assert_items_equal(items[2], first[2])  # served from the cache
    other = SyntheticRadiographs(seed=4, **SMALL)
    assert all(not torch.equal(items[i]["image"], other[i]["image"]) for i in range(6))


def test_splits_hold_different_images():
    images = {split: torch.stack([SyntheticRadiographs(split=split, **SMALL)[i]["image"]
                                  for i in range(6)]) for split in ("train", "val", "test")}
    for a, b in itertools.combinations(images.values(), 2):
        assert (a - b).abs().flatten(1).amax(dim=1).min() > 0.1


def test_items_follow_the_multi_label_contract():
    data = SyntheticRadiographs(**SMALL)
    assert data.classes == list(FINDINGS) and data.num_classes == 5 and data.multi_label
    assert len(data) == 40
    item = data[7]
    assert set(item) == {"image", "label", "index", "boxes", "box_labels"}
    image = item["image"]
    assert image.shape == (3, 48, 48) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])  # grey
    assert item["label"].shape == (5,) and item["label"].dtype == torch.float32
    assert item["boxes"].dtype == torch.float32 and item["boxes"].shape[1] == 4
    assert item["box_labels"].dtype == torch.long
    assert item["boxes"].shape[0] == item["box_labels"].shape[0]
    assert item["index"] == 7
    batch = collate([data[i] for i in range(4)])
    assert batch["label"].shape == (4, 5) and len(batch["boxes"]) == 4


def test_labels_are_the_kinds_of_the_lesions_drawn():
    data = SyntheticRadiographs(num_samples=200, image_size=48)
    counts = []
    for index in range(len(data)):
        item = data[index]
        present = torch.zeros(5)
        present[item["box_labels"]] = 1
        assert torch.equal(item["label"], present)
        counts.append(len(item["box_labels"]))
    assert set(counts) == {0, 1, 2, 3}
    prevalence = torch.stack([data[i]["label"] for i in range(len(data))]).mean(dim=0)
    assert (prevalence > 0.1).all() and (prevalence < 0.5).all()


def test_boxes_are_the_tight_boxes_of_lesions_that_do_not_overlap():
    data = SyntheticRadiographs(num_samples=60, image_size=64)
    seen_kinds = set()
    for index in range(len(data)):
        rendering = data.render(index)
        item = data[index]
        assert item["box_labels"].tolist() == rendering.lesion_kinds.tolist()
        masks = rendering.lesion_masks
        assert (masks.sum(axis=0) <= 1).all()
        for mask, box in zip(masks, item["boxes"].long().tolist(), strict=True):
            y0, y1, x0, x1 = box
            rows, columns = np.nonzero(mask)
            assert (rows.min(), rows.max() + 1, columns.min(), columns.max() + 1) == \
                (y0, y1, x0, x1)
        seen_kinds.update(rendering.lesion_kinds.tolist())
    assert seen_kinds == set(range(5))


def test_lesions_change_the_image_only_inside_their_boxes():
    data = SyntheticRadiographs(num_samples=30, image_size=48)
    # the same draws give the same chest: the lesions are drawn after it
    lesion_free = SyntheticRadiographs(num_samples=30, image_size=48, max_lesions=0)
    for index in range(len(data)):
        rendering = data.render(index)
        background = lesion_free.render(index).clean_image
        changed = np.abs(rendering.clean_image - background) > 1e-6
        inside = rendering.lesion_masks.any(axis=0)
        assert not (changed & ~inside).any()


def test_each_kind_has_its_own_look():
    """Mean lesion size and brightness change separate the kinds as the docstring says."""
    data = SyntheticRadiographs(num_samples=300, image_size=64)
    lesion_free = SyntheticRadiographs(num_samples=300, image_size=64, max_lesions=0)
    sizes: dict[int, list[int]] = {k: [] for k in range(5)}
    changes: dict[int, list[float]] = {k: [] for k in range(5)}
    for index in range(len(data)):
        rendering = data.render(index)
        background = lesion_free.render(index).clean_image
        for kind, mask in zip(rendering.lesion_kinds, rendering.lesion_masks, strict=True):
            sizes[int(kind)].append(int(mask.sum()))
            changes[int(kind)].append(float((rendering.clean_image - background)[mask].mean()))
    size = {FINDINGS[k]: np.mean(v) for k, v in sizes.items()}
    change = {FINDINGS[k]: np.mean(v) for k, v in changes.items()}
    assert size["Nodule"] < size["Mass"] < size["Effusion"]
    assert size["Nodule"] < size["Consolidation"]
    assert change["Pneumothorax"] < 0 < min(change[k] for k in FINDINGS if k != "Pneumothorax")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="image_size"):
        SyntheticRadiographs(image_size=16)
    with pytest.raises(ValueError, match="num_samples"):
        SyntheticRadiographs(num_samples=0)
    with pytest.raises(ValueError, match="max_lesions"):
        SyntheticRadiographs(max_lesions=-1)
    with pytest.raises(ValueError, match="split"):
        SyntheticRadiographs(split="dev")
    with pytest.raises(IndexError, match="out of range"):
        SyntheticRadiographs(**SMALL).render(40)
