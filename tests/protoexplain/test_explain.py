"""Case-based explanations of new images: predicted class, top prototypes by contribution,
where each is found, the picture and explanations.json."""

import json

import cv2
import numpy as np
import pytest
import torch

from protoexplain.explain import class_weights, explain_images, load_images
from protoexplain.factory import build_dataset
from tests.protoexplain.tiny_runs import pushed_run
from tests.prototypes.tiny_protopnet import make_model
from tests.prototypes.tiny_xprotonet import make_xprotonet


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return pushed_run(tmp_path_factory.mktemp("explain"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "wide.png"), rng.integers(0, 255, (20, 40, 3), np.uint8))
    cv2.imwrite(str(folder / "grey.png"), np.full((10, 10), 128, np.uint8))
    return [folder / "wide.png", folder / "grey.png"]


def test_images_are_read_as_rgb_in_0_1_at_the_models_size(images):
    loaded = load_images(images, (32, 32))
    assert loaded.shape == (2, 3, 32, 32)
    assert 0.0 <= float(loaded.min()) and float(loaded.max()) <= 1.0
    assert torch.allclose(loaded[1], torch.full((3, 32, 32), 128 / 255), atol=1e-3)


def test_class_weights_are_the_last_layer_as_the_model_applies_it():
    protopnet = make_model()
    assert torch.equal(class_weights(protopnet), protopnet.last_layer.weight)
    xprotonet = make_xprotonet()
    assert torch.equal(class_weights(xprotonet), xprotonet.class_weights())
    assert class_weights(xprotonet).shape == (3, 6)


def test_each_image_is_explained_by_its_top_prototypes_ranked_by_contribution(
        run, images, tmp_path):
    results = explain_images(run, images, tmp_path, top_k=2, methods=["upsample", "centre"])
    classes = build_dataset(run.config, "train", augment=False).classes
    with torch.no_grad():
        output = run.model(load_images(images, (32, 32)))
    probabilities = output.logits.softmax(dim=1)
    weights = run.model.last_layer.weight.detach()
    assert [r["image"] for r in results] == [str(p) for p in images]
    for n, result in enumerate(results):
        label = int(output.logits[n].argmax())
        assert result["predicted_class"] == classes[label]
        assert result["probability"] == pytest.approx(float(probabilities[n, label]))
        explained = result["prototypes"]
        assert len(explained) == 2
        assert [e["contribution"] for e in explained] == sorted(
            (e["contribution"] for e in explained), reverse=True)
        for entry in explained:
            p = entry["prototype"]
            assert entry["class_name"] == classes[run.records[p].class_index]
            assert entry["similarity"] == pytest.approx(float(output.similarities[n, p]))
            assert entry["contribution"] == pytest.approx(
                float(output.similarities[n, p] * weights[label, p]))
            assert list(entry["boxes"]) == ["upsample", "centre"]
            for y0, y1, x0, x1 in entry["boxes"].values():
                assert 0 <= y0 < y1 <= 32 and 0 <= x0 < x1 <= 32
        assert "findings" not in result  # single-label
    assert json.loads((tmp_path / "explanations.json").read_text()) == results


def test_the_picture_stacks_a_header_and_one_row_per_prototype(run, images, tmp_path):
    result = explain_images(run, images[:1], tmp_path, top_k=1)[0]
    assert result["picture"] == str(tmp_path / "wide_explanation.png")
    assert list(result["prototypes"][0]["boxes"]) == ["upsample"]  # default: push method
    picture = cv2.imread(result["picture"])
    tile, strip, gap = 32 * 6, 18, 4
    # header (image + caption), then a captioned row: upsample's panel and the source
    assert picture.shape == (tile + strip + (tile + 2 * strip), 2 * tile + gap, 3)
