import pytest
import torch
from torch.utils.data import DataLoader

from protoexplain.data import SyntheticParts, collate


def item(index: int, boxes: int) -> dict:
    return {
        "image": torch.full((3, 4, 5), float(index)),
        "label": index % 2,
        "index": index,
        "part_names": ("head", "tail"),
        "boxes": torch.zeros(boxes, 4),
        "path": f"image_{index}.png",
    }


def test_collate_stacks_tensors_turns_ints_into_long_tensor_and_keeps_part_names_once():
    batch = collate([item(0, 1), item(1, 1), item(2, 1)])
    assert batch["image"].shape == (3, 3, 4, 5)
    assert torch.equal(batch["image"][:, 0, 0, 0], torch.tensor([0.0, 1.0, 2.0]))
    assert batch["label"].dtype == torch.long and batch["label"].tolist() == [0, 1, 0]
    assert batch["index"].tolist() == [0, 1, 2]
    assert batch["part_names"] == ("head", "tail")
    assert batch["boxes"].shape == (3, 1, 4)
    assert batch["path"] == ["image_0.png", "image_1.png", "image_2.png"]


def test_collate_keeps_ragged_tensors_as_a_list():
    batch = collate([item(0, 1), item(1, 3)])
    assert isinstance(batch["boxes"], list)
    assert [b.shape[0] for b in batch["boxes"]] == [1, 3]


def test_collate_rejects_empty_batches_mismatched_keys_and_differing_part_names():
    with pytest.raises(ValueError, match="empty"):
        collate([])
    with pytest.raises(ValueError, match="keys"):
        collate([item(0, 1), {"image": torch.zeros(3, 4, 5)}])
    other = item(1, 1) | {"part_names": ("wing",)}
    with pytest.raises(ValueError, match="part_names"):
        collate([item(0, 1), other])


def test_data_loader_batches_synthetic_parts_with_collate():
    dataset = SyntheticParts(num_samples=6, image_size=32)
    batch = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate)))
    assert batch["image"].shape == (4, 3, 32, 32)
    assert batch["part_masks"].shape == (4, len(dataset.part_names), 32, 32)
    assert batch["part_keypoints"].shape == (4, len(dataset.part_names), 3)
    assert batch["boxes"].shape == (4, 1, 4)
    assert batch["label"].tolist() == [0, 1, 2, 3]
    assert batch["part_names"] == dataset.part_names
