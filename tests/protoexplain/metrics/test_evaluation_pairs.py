"""Which images each prototype is scored on, and the ground truth gathered with them."""

from __future__ import annotations

import torch
from toy_parts import ToyParts

from protoexplain.metrics.pairs import build_pairs, select_class_images


class Labels(torch.utils.data.Dataset):
    def __init__(self, labels: list) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.zeros(3, 4, 4), "label": self.labels[index], "index": index}


def test_each_class_gets_up_to_the_cap_of_its_own_images_reproducibly():
    dataset = Labels([0, 1, 2] * 5)
    chosen = select_class_images(dataset, [0, 2], 3, seed=4, progress=False)
    assert sorted(chosen) == [0, 2]
    assert all(len(v) == 3 for v in chosen.values())
    assert all(dataset.labels[i] == c for c, v in chosen.items() for i in v)
    assert chosen == select_class_images(dataset, [0, 2], 3, seed=4, progress=False)
    assert chosen != select_class_images(dataset, [0, 2], 3, seed=5, progress=False)
    everything = select_class_images(dataset, [1], None, progress=False)
    assert everything == {1: [1, 4, 7, 10, 13]}


def test_multi_label_images_count_for_each_positive_class():
    dataset = Labels([torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]),
                      torch.tensor([1.0, 0.0])])
    assert select_class_images(dataset, [0, 1], None, progress=False) == {0: [0, 2], 1: [0, 1]}


def test_pairs_join_each_prototype_with_its_class_images_and_stack_their_ground_truth():
    dataset = ToyParts(num_samples=8, num_classes=2)
    classes = torch.tensor([0, 0, 1, 1])
    pairs = build_pairs(dataset, classes, prototypes=[1, 2], images_per_class=2, seed=0,
                        progress=False)
    assert len(pairs) == 4
    assert pairs.prototypes.tolist() == [1, 1, 2, 2]
    labels = pairs.indices[pairs.rows] % 2
    assert labels.tolist() == [0, 0, 1, 1]
    assert pairs.images.shape == (4, 3, 32, 32)
    assert set(pairs.ground_truth) == {"object_mask", "part_masks", "part_keypoints"}
    assert pairs.ground_truth["part_masks"].shape == (4, 2, 32, 32)
    assert pairs.part_names == ("top", "bottom")


def test_ground_truth_the_data_set_lacks_is_left_out():
    dataset = ToyParts(keys=("object_mask",))
    pairs = build_pairs(dataset, torch.tensor([0, 1]), images_per_class=1, progress=False)
    assert set(pairs.ground_truth) == {"object_mask"}
    assert pairs.part_names == ()
