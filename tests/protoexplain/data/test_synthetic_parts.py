import itertools
from dataclasses import asdict

import numpy as np
import pytest
import torch

from protoexplain.data import SyntheticParts
from protoexplain.data.synthetic_parts import (
    BODY_COLOURS,
    DISCRIMINATIVE_PARTS,
    HEAD_COLOURS,
    PART_NAMES,
    TAIL_COLOURS,
    WING_PATTERNS,
    species_table,
)

SMALL = dict(num_samples=24, image_size=48)


def assert_items_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_same_seed_gives_identical_items_and_another_seed_different_ones():
    first = SyntheticParts(seed=3, **SMALL)
    again = SyntheticParts(seed=3, cache=False, **SMALL)
    other = SyntheticParts(seed=4, **SMALL)
    for i in range(4):
        assert_items_equal(first[i], again[i])
        assert not torch.equal(first[i]["image"], other[i]["image"])
        assert not torch.equal(first[i]["object_mask"], other[i]["object_mask"])


def test_item_does_not_depend_on_access_order_or_cache():
    forward = SyntheticParts(**SMALL)
    items = [forward[i] for i in range(6)]
    backward = SyntheticParts(cache=False, **SMALL)
    for i in reversed(range(6)):
        assert_items_equal(items[i], backward[i])
    assert_items_equal(items[2], forward[2])  # served from the cache


def test_splits_hold_different_images():
    images = {
        split: torch.stack([SyntheticParts(split=split, **SMALL)[i]["image"] for i in range(8)])
        for split in ("train", "val", "test")
    }
    for a, b in itertools.combinations(images.values(), 2):
        differences = (a[:, None] - b[None]).abs().flatten(2).amax(dim=2)
        assert (differences > 0.2).all()


def test_default_split_sizes_and_unknown_split_error():
    assert [len(SyntheticParts(split=s)) for s in ("train", "val", "test")] == [2000, 400, 800]
    with pytest.raises(ValueError, match="split"):
        SyntheticParts(split="validation")
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticParts(num_classes=28)
    with pytest.raises(IndexError):
        SyntheticParts(**SMALL)[24]


def test_item_fields_follow_the_data_set_contract():
    dataset = SyntheticParts(num_classes=5, **SMALL)
    item = dataset[7]
    n, size = len(PART_NAMES), 48
    assert item["image"].shape == (3, size, size) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["label"] == 7 % 5 and isinstance(item["label"], int)
    assert item["index"] == 7
    assert item["object_mask"].shape == (size, size) and item["object_mask"].dtype == torch.bool
    assert item["part_masks"].shape == (n, size, size) and item["part_masks"].dtype == torch.bool
    assert item["part_names"] == dataset.part_names == SyntheticParts.part_names == PART_NAMES
    assert item["part_keypoints"].shape == (n, 3)
    assert item["part_keypoints"].dtype == torch.float32
    assert item["boxes"].shape == (1, 4) and item["boxes"].dtype == torch.float32
    assert dataset.num_classes == len(dataset.classes) == 5
    assert dataset.classes[0] == "red head, plain wing, green tail"


def test_returned_image_is_the_rendered_image():
    dataset = SyntheticParts(**SMALL)
    rendering = dataset.render(5)
    expected = torch.from_numpy(rendering.image).permute(2, 0, 1).float() / 255.0
    assert torch.equal(dataset[5]["image"], expected)


def test_every_part_mask_pixel_lies_on_its_drawn_part_and_shows_its_colour():
    dataset = SyntheticParts(occlusion=0.5, **SMALL)
    for i in range(len(dataset)):
        rendering = dataset.render(i)
        masks = dataset[i]["part_masks"].numpy()
        for k in range(len(PART_NAMES)):
            assert not (masks[k] & ~rendering.shape_masks[k]).any()
            pixels = rendering.clean_image[masks[k]]
            colours = rendering.part_colours[k]
            matches = (pixels[:, None, :] == colours[None, :, :]).all(axis=2).any(axis=1)
            assert matches.all(), (i, PART_NAMES[k])


def test_part_masks_are_disjoint_and_their_union_is_the_object_mask():
    dataset = SyntheticParts(occlusion=0.5, **SMALL)
    for i in range(len(dataset)):
        item = dataset[i]
        counts = item["part_masks"].sum(dim=0)
        assert counts.max() <= 1
        assert torch.equal(counts.bool(), item["object_mask"])


def test_occluders_only_remove_part_pixels():
    clear = SyntheticParts(occlusion=0.0, **SMALL)
    occluded = SyntheticParts(occlusion=1.0, **SMALL)
    largest_occluder = (2 * 0.12 * SMALL["image_size"]) ** 2  # half-size at most 12 %
    removed = []
    for i in range(len(clear)):
        before, after = clear.render(i).label_map, occluded.render(i).label_map
        changed = before != after
        assert (after[changed] == 0).all()
        removed.append(int(changed.sum()))
    # every image has an occluder on the bird; a thin one can miss every part pixel
    assert sum(count > 0 for count in removed) >= 0.8 * len(removed)
    assert max(removed) <= largest_occluder


def test_keypoints_are_centres_of_visible_part_pixels():
    dataset = SyntheticParts(occlusion=0.5, **SMALL)
    for i in range(len(dataset)):
        item = dataset[i]
        keypoints = item["part_keypoints"].tolist()
        for mask, (x, y, visible) in zip(item["part_masks"], keypoints, strict=True):
            rows, columns = np.nonzero(mask.numpy())
            assert visible == float(len(rows) > 0)
            if len(rows):
                assert x == pytest.approx(columns.mean(), abs=1e-4)
                assert y == pytest.approx(rows.mean(), abs=1e-4)


def test_object_box_encloses_object_mask_tightly():
    dataset = SyntheticParts(**SMALL)
    for i in range(len(dataset)):
        item = dataset[i]
        y0, y1, x0, x1 = (int(v) for v in item["boxes"][0])
        mask = item["object_mask"]
        assert mask[y0:y1, x0:x1].sum() == mask.sum()
        assert mask[y0].any() and mask[y1 - 1].any()
        assert mask[:, x0].any() and mask[:, x1 - 1].any()


def test_species_table_is_fine_grained_over_discriminative_parts_only():
    table = species_table(8)
    assert len(set(table)) == 8
    for species in table:
        assert species.head in HEAD_COLOURS
        assert species.wing in WING_PATTERNS
        assert species.tail in TAIL_COLOURS

    def differences(a, b):
        return sum(getattr(a, part) != getattr(b, part) for part in DISCRIMINATIVE_PARTS)

    for species in table:
        assert min(differences(species, other) for other in table if other != species) == 1
    pairs = list(itertools.combinations(table, 2))
    assert sum(differences(a, b) <= 2 for a, b in pairs) >= 0.9 * len(pairs)
    assert len(set(species_table(27))) == 27
    assert not set(BODY_COLOURS) & (set(HEAD_COLOURS) | set(TAIL_COLOURS))


@pytest.mark.parametrize("label, part", [(1, "head"), (2, "wing"), (3, "tail")])
def test_changing_the_class_changes_only_its_discriminative_part(label, part):
    dataset = SyntheticParts(occlusion=0.0, **SMALL)
    base_species, variant_species = asdict(dataset.species[0]), asdict(dataset.species[label])
    assert {p for p in base_species if base_species[p] != variant_species[p]} == {part}
    k = PART_NAMES.index(part)
    for i in range(0, len(dataset), 8):
        base, variant = dataset.render(i, label=0), dataset.render(i, label=label)
        assert np.array_equal(base.label_map, variant.label_map)
        changed = (base.image != variant.image).any(axis=2)
        assert changed.any()
        assert not (changed & (base.label_map != k + 1)).any()


def test_keypoints_almost_always_fall_on_their_own_part():
    dataset = SyntheticParts(**SMALL)
    on_part = visible = 0
    for i in range(len(dataset)):
        item = dataset[i]
        for mask, (x, y, seen) in zip(
            item["part_masks"], item["part_keypoints"].tolist(), strict=True
        ):
            visible += int(seen)
            on_part += int(seen > 0 and bool(mask[round(y), round(x)]))
    assert on_part >= 0.95 * visible


def test_num_samples_can_size_each_split_from_one_mapping():
    sizes = {"train": 12, "test": 5}
    assert len(SyntheticParts(split="train", num_samples=sizes)) == 12
    assert len(SyntheticParts(split="test", num_samples=sizes)) == 5
    assert len(SyntheticParts(split="val", num_samples=sizes)) == 400
    with pytest.raises(ValueError, match="unknown splits"):
        SyntheticParts(split="train", num_samples={"training": 3})
