"""Localizing projected prototypes in their source images, and the projection.json rows."""

import json

import pytest
import torch

from protoexplain.factory import build_dataset
from protoexplain.projection import localize_records, projection_json, stack_images
from prototypes import localize
from tests.protoexplain.tiny_runs import pushed_run

METHODS = {"upsample": {}, "centre": {}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return pushed_run(tmp_path_factory.mktemp("projection"))


@pytest.fixture(scope="module")
def push_set(run):
    return build_dataset(run.config, "train", augment=False)


def test_stack_images_keeps_the_order_of_the_indices(push_set):
    stacked = stack_images(push_set, [3, 0, 3])
    assert stacked.shape == (3, 3, 32, 32)
    assert torch.equal(stacked[0], push_set[3]["image"])
    assert torch.equal(stacked[1], push_set[0]["image"])
    assert torch.equal(stacked[2], stacked[0])


def test_each_method_localizes_every_prototype_in_its_own_source_image(run, push_set):
    found = localize_records(run.model, push_set, run.records, METHODS, batch_size=16,
                             device=run.device, progress=False)
    assert list(found) == ["upsample", "centre"]
    images = torch.stack([push_set[r.sample_index]["image"] for r in run.records])
    ids = torch.tensor([r.prototype for r in run.records])
    for name, result in found.items():
        assert result["maps"].shape == (2, 32, 32) and result["boxes"].shape == (2, 4)
        direct = localize(run.model, images, ids, method=name)
        assert torch.equal(result["maps"], direct.maps)
        assert torch.equal(result["boxes"], direct.boxes)


def test_batches_of_one_give_the_same_maps_as_one_batch(run, push_set):
    whole = localize_records(run.model, push_set, run.records, {"upsample": {}},
                             batch_size=16, device=run.device, progress=False)["upsample"]
    single = localize_records(run.model, push_set, run.records, {"upsample": {}},
                              batch_size=1, device=run.device, progress=False)["upsample"]
    assert torch.allclose(whole["maps"], single["maps"], atol=1e-4)  # float sums differ
    assert torch.equal(whole["boxes"], single["boxes"])


def test_projection_rows_hold_the_record_class_name_boxes_and_picture(run):
    boxes = {"upsample": {"boxes": torch.tensor([[0, 16, 2, 30], [4, 32, 0, 8]])},
             "centre": {"boxes": torch.tensor([[8, 24, 8, 24], [8, 24, 8, 24]])}}
    rows = projection_json(run.records, boxes, ["wren", "finch"],
                           ["prototypes/a.png", "prototypes/b.png"])
    assert [row["prototype"] for row in rows] == [0, 1]
    first = rows[0]
    assert {k: first[k] for k in run.records[0].to_dict()} == run.records[0].to_dict()
    assert first["class_name"] == "wren" and rows[1]["class_name"] == "finch"
    assert first["localization"] == {"upsample": {"box": [0, 16, 2, 30]},
                                     "centre": {"box": [8, 24, 8, 24]}}
    assert rows[1]["picture"] == "prototypes/b.png"
    assert json.loads(json.dumps(rows)) == rows  # plain JSON types only
    assert all(type(v) is int for v in rows[1]["localization"]["upsample"]["box"])
    assert "picture" not in projection_json(run.records, boxes, ["wren", "finch"])[0]
