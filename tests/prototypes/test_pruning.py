"""The original's pruning rule on hand-built nearest patches."""

from __future__ import annotations

import pytest
import torch

from prototypes import NearestPatches, pruning_decisions


def _nearest(labels: list[list[int]]) -> NearestPatches:
    labels = torch.tensor(labels)
    count, k = labels.shape
    return NearestPatches(sample_indices=torch.arange(count * k).view(count, k),
                          positions=torch.zeros(count, k, 2, dtype=torch.long),
                          distances=torch.arange(count * k, dtype=torch.float).view(count, k),
                          labels=labels)


def test_a_prototype_goes_when_fewer_than_threshold_neighbours_share_its_class():
    # k = 6, threshold = 3 (the original's values); prototypes of classes 0, 0, 1, 2
    nearest = _nearest([[0, 0, 0, 1, 1, 1],   # 3 of its class: stays (not fewer than 3)
                        [1, 1, 0, 2, 0, 2],   # 2: goes
                        [1, 1, 1, 1, 1, 1],   # 6: stays
                        [0, 1, 0, 1, 0, 1]])  # 0: goes
    decisions = pruning_decisions(nearest, torch.tensor([0, 0, 1, 2]), threshold=3)
    assert [d.own_class for d in decisions] == [3, 2, 6, 0]
    assert [d.removed for d in decisions] == [False, True, False, True]
    assert decisions[1].to_dict()["labels"] == [1, 1, 0, 2, 0, 2]
    assert decisions[1].to_dict()["sample_indices"] == [6, 7, 8, 9, 10, 11]
    assert not any(d.removed for d in pruning_decisions(nearest, torch.tensor([0, 0, 1, 2]), 0))


def test_multi_label_neighbours_never_count_as_own_class():
    decisions = pruning_decisions(_nearest([[-1, -1, 0]]), torch.tensor([0]), threshold=1)
    assert decisions[0].own_class == 1 and not decisions[0].removed
    with pytest.raises(ValueError, match="threshold"):
        pruning_decisions(_nearest([[0]]), torch.tensor([0]), threshold=-1)
