"""Localization against labelled finding boxes: padding, regions, best IoU, pair selection
and the benchmark metrics, on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from protoexplain.benchmark import run_benchmark
from protoexplain.metrics.boxes import NO_BOX, best_box_iou, finding_regions, pad_boxes
from protoexplain.metrics.localization import LocalizationSettings
from protoexplain.metrics.pairs import build_pairs, select_class_images
from prototypes import Localization, XProtoNet


def test_ragged_boxes_are_padded_with_unlabelled_rows():
    boxes, labels = pad_boxes([torch.tensor([[0.0, 2.0, 0.0, 2.0], [1.0, 3.0, 1.0, 4.0]]),
                               torch.zeros(0, 4)],
                              [torch.tensor([2, 0]), torch.zeros(0, dtype=torch.long)])
    assert boxes.shape == (2, 2, 4) and labels.tolist() == [[2, 0], [NO_BOX, NO_BOX]]
    assert boxes[0, 1].tolist() == [1.0, 3.0, 1.0, 4.0]
    empty_boxes, empty_labels = pad_boxes([torch.zeros(0, 4)], [torch.zeros(0).long()])
    assert empty_boxes.shape == (1, 1, 4) and empty_labels.tolist() == [[NO_BOX]]
    with pytest.raises(ValueError, match="image 0"):
        pad_boxes([torch.zeros(2, 3)], [torch.zeros(2).long()])


def test_region_is_the_union_of_the_pairs_finding_boxes_by_pixel_centres():
    boxes = torch.tensor([[[0.0, 2.0, 0.0, 2.0], [4.0, 6.0, 4.0, 5.0], [2.0, 4.0, 2.0, 4.0]],
                          [[1.4, 2.6, 1.4, 2.6], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    labels = torch.tensor([[1, 1, 0], [3, NO_BOX, NO_BOX]])
    regions, present = finding_regions(boxes, labels, torch.tensor([1, 3]), (6, 6))
    expected = torch.zeros(6, 6, dtype=torch.bool)
    expected[0:2, 0:2] = True  # both class-1 boxes, not the class-0 one
    expected[4:6, 4:5] = True
    assert torch.equal(regions[0], expected)
    # A fractional box covers the pixels whose centre (row + 0.5) it contains: 1.5 and 2.5.
    assert regions[1].nonzero().tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]
    assert present.tolist() == [True, True]
    _, absent = finding_regions(boxes, labels, torch.tensor([2, 0]), (6, 6))
    assert absent.tolist() == [False, False]


def test_iou_is_taken_with_the_best_box_of_the_pairs_finding():
    boxes = torch.tensor([[[0.0, 4.0, 0.0, 4.0], [4.0, 8.0, 4.0, 8.0], [0.0, 8.0, 0.0, 8.0]]])
    labels = torch.tensor([[1, 1, 0]])
    predicted = torch.tensor([[4, 8, 4, 6]])
    iou, found = best_box_iou(predicted, boxes, labels, torch.tensor([1]))
    assert iou.tolist() == pytest.approx([0.5]) and found.tolist() == [True]
    iou, found = best_box_iou(predicted, boxes, labels, torch.tensor([2]))
    assert iou.tolist() == [0.0] and found.tolist() == [False]


class BoxedImages(torch.utils.data.Dataset):
    """Four 16 px multi-label images over 2 classes; image 1 is positive for class 1 but has
    no box of it, image 3 has no label."""

    multi_label = True
    classes = ["a", "b"]
    num_classes = 2

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        labels = [[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]][index]
        boxes = {0: ([[0, 8, 0, 8], [8, 16, 8, 16]], [0, 1]), 1: ([], []),
                 2: ([[4, 12, 4, 12]], [0]), 3: ([], [])}[index]
        return {"image": torch.full((3, 16, 16), index / 4), "label": torch.tensor(labels),
                "index": index, "boxes": torch.tensor(boxes[0], dtype=torch.float32).view(-1, 4),
                "box_labels": torch.tensor(boxes[1], dtype=torch.long)}


def test_with_require_box_an_image_counts_only_for_the_findings_it_has_boxes_of():
    dataset = BoxedImages()
    assert select_class_images(dataset, [0, 1], None, progress=False) == {0: [0, 2], 1: [0, 1]}
    assert select_class_images(dataset, [0, 1], None, require_box=True,
                               progress=False) == {0: [0, 2], 1: [0]}
    pairs = build_pairs(dataset, torch.tensor([0, 1]), images_per_class=None, require_box=True,
                        progress=False)
    assert pairs.indices.tolist() == [0, 2]
    assert pairs.ground_truth["boxes"].shape == (2, 2, 4)
    assert pairs.ground_truth["box_labels"].tolist() == [[0, 1], [0, NO_BOX]]


def test_benchmark_scores_a_map_on_the_finding_box_and_skips_nothing(monkeypatch):
    """A fake method whose map is the top-left quarter of the image: the class-0 pair on
    image 0 (box 0:8, 0:8) is hit with all its energy and IoU 1; the class-1 pair on image 0
    (box 8:16, 8:16) is missed; the class-0 pair on image 2 (box 4:12) gets a quarter of
    the energy and IoU 16 / 112."""
    import prototypes.localization

    def quarter(model, images, prototype_ids, **options):
        maps = torch.zeros(images.shape[0], 16, 16)
        maps[:, :8, :8] = 1.0
        return Localization(maps=maps, boxes=torch.tensor([[0, 8, 0, 8]]).repeat(
            images.shape[0], 1))

    monkeypatch.setitem(prototypes.localization.LOCALIZATION_METHODS, "quarter", quarter)
    model = XProtoNet("small_cnn", 2, prototypes_per_class=1, prototype_dim=4, image_size=16,
                      backbone_options={"width": 2})
    settings = LocalizationSettings(sanity=False, deletion_insertion=False,
                                    pointing_tolerance=0.5)
    results = run_benchmark(model, BoxedImages(), {"quarter": {}}, images_per_prototype=None,
                            settings=settings, progress=False)["quarter"]
    assert results["pairs"] == 3 and results["prototypes"] == 2
    assert results["energy_box"] == pytest.approx((1.0 + 0.0 + 0.25) / 3)
    assert results["pointing_box"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    assert results["iou_box"] == pytest.approx((1.0 + 0.0 + 16 / 112) / 3)
    assert not any(math.isnan(v) for v in results.values())


def test_fidelity_and_deletion_skip_pairs_whose_prototype_score_is_not_positive():
    """A cosine of -1 (the prototype absent) has no region whose removal lowers it: the
    pair is left out of fidelity and deletion / insertion instead of dragging them down."""
    torch.manual_seed(0)
    model = XProtoNet("small_cnn", 2, prototypes_per_class=1, prototype_dim=4, image_size=16,
                      backbone_options={"width": 2}).eval()
    images = torch.stack([BoxedImages()[i]["image"] for i in (0, 2)])
    features = model(images).prototype_features.mean(dim=0)  # (P, D)
    settings = LocalizationSettings(sanity=False, stability=False, score="pooled")

    def benchmark(sign: float) -> dict[str, float]:
        with torch.no_grad():
            model.prototype_vectors.copy_(sign * features)
        return run_benchmark(model, BoxedImages(), {"upsample": {}}, images_per_prototype=None,
                             settings=settings, progress=False)["upsample"]

    present = benchmark(1.0)
    assert all(math.isfinite(present[k]) for k in ("fidelity", "deletion", "insertion"))
    absent = benchmark(-1.0)
    assert all(math.isnan(absent[k]) for k in ("fidelity", "deletion", "insertion"))
    assert math.isfinite(absent["energy_box"])  # the map is still scored against the boxes
